"""`rlhf-loop bench reward-options`: what each reward-training option of the loop buys, on the same labels.

The world is `bench selection`'s: synthetic candidates of friendly, hostile and
neutral sentences, VADER as the gold, an annotator who orders by gold plus
Gumbel noise calibrated to people's ~73% agreement, and one fixed gold-ordered
comparison set. Every variant gets the same label budget -- `budget` random
prompts per round, one ranking each, retrained after every round -- and is
scored against the gold on the comparison set after the last round. Each
variant changes one thing from the loop's defaults:

- `default`: Bradley-Terry, warm start from the last round's model on every
  label so far, half of each prompt's candidates from the previous (weaker) policy;
- `plackett_luce`: the listwise loss on whole rankings;
- `cold_start`: every round trains the base model on every label so far;
- `one_policy`: every candidate from the active policy;
- `ensemble`: four heads on the shared backbone, each on its own bootstrap.

Seeds repeat everything with other pools, annotators and training seeds; each
variant gets its mean with a 95% confidence interval over seeds and its paired
difference from `default`, and its training seconds over every round and seed
beside the default's from the same run (what the option costs).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.core.rankings import Ranking
from services.reward.train_config import RewardTrainConfig
from services.reward.trainer import prepare_split, train_reward_model
from services.sim.gold import vader_positivity
from services.sim.simulated_annotators import calibrate_temperature, noisy_order
from services.tools.progress import stderr_progress
from services.tools.selection_bench import (
    TEST_SEED,
    candidate_pool,
    confidence_interval,
    gold_ranking,
    save_base_model,
)

# variant -> (what it changes from the default): training settings, warm start, previous-policy shift
VARIANTS: dict[str, dict] = {
    "default": {},
    "plackett_luce": {"loss": "plackett_luce"},
    "cold_start": {"warm_start": False},
    "one_policy": {"previous_shift": 0},
    "ensemble": {"ensemble_size": 4},
}
PREVIOUS_SHIFT = 1  # the previous policy's candidates are one tone step less friendly
_say = stderr_progress("bench reward-options")


def _labels(
    pool: list[tuple[str, list[str]]], chosen: list[int], temperature: float, rng: random.Random
) -> list[Ranking]:
    """One simulated annotator's ranking of each chosen prompt's candidates."""
    labels = []
    for prompt, candidates in (pool[i] for i in chosen):
        gold = [vader_positivity(prompt, c) for c in candidates]
        labels.append(gold_ranking(prompt, candidates, noisy_order(gold, temperature, rng)))
    return labels


def run_variant(
    bases: dict[int, Path], variant: str, seed: int, settings: dict, test: list[Ranking], scratch: Path
) -> tuple[float, float]:
    """Gold accuracy on `test` after the last round of one variant on one seed, and its seconds of training."""
    change = VARIANTS[variant]
    shift = change.get("previous_shift", PREVIOUS_SHIFT)
    pool = candidate_pool(settings["budget"] * settings["rounds"], settings["k"], seed, previous_shift=shift)
    temperature = calibrate_temperature([[vader_positivity(p, c) for c in cands] for p, cands in pool], 0.73)
    annotator = random.Random(seed * 7 + 1)
    members = change.get("ensemble_size", 1)
    train = settings["train"] | {k: v for k, v in change.items() if k in ("loss", "ensemble_size")}
    base = bases[members]
    labelled: list[Ranking] = []
    current = base
    accuracy = float("nan")
    seconds = 0.0
    order = random.Random(seed).sample(range(len(pool)), len(pool))  # random selection, the same for every variant
    for number in range(settings["rounds"]):
        chosen = order[number * settings["budget"] : (number + 1) * settings["budget"]]
        labelled += _labels(pool, chosen, temperature, annotator)
        config = RewardTrainConfig(**train, seed=seed)
        output = scratch / f"{variant}-{seed}-{number}"
        start = current if change.get("warm_start", True) else base
        began = time.monotonic()
        accuracy = train_reward_model(start, prepare_split(labelled, config, test), config, output).heldout_accuracy
        seconds += time.monotonic() - began
        current = output
    return accuracy, seconds


def run_reward_options_benchmark(
    model: str = "minilm",
    seeds: int = 3,
    rounds: int = 3,
    budget: int = 12,
    k: int = 4,
    test_prompts: int = 60,
    train: dict | None = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    began = time.monotonic()
    settings = {"rounds": rounds, "budget": budget, "k": k,
                "train": train or {"epochs": 2, "learning_rate": 1e-4, "batch_size": 32}}  # fmt: skip
    if rounds < 2 or seeds < 2:
        raise ValueError("need rounds >= 2 and seeds >= 2")
    test = [gold_ranking(p, c) for p, c in candidate_pool(test_prompts, k, TEST_SEED)]
    final: dict[str, list[float]] = {v: [] for v in VARIANTS}
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-reward-options-") as tmp:
        scratch = Path(tmp)
        members = {change.get("ensemble_size", 1) for change in VARIANTS.values()}
        bases = {n: save_base_model(model, n, scratch / f"base-{n}") for n in sorted(members)}
        for seed in range(seeds):
            for variant in VARIANTS:
                progress(f"seed {seed + 1}/{seeds}: {variant}")
                accuracy, took = run_variant(bases, variant, seed, settings, test, scratch)
                final[variant].append(accuracy)
                seconds[variant].append(took)
    gains = {v: [a - b for a, b in zip(final[v], final["default"], strict=True)] for v in VARIANTS}
    variants = {
        v: {"changes": VARIANTS[v], "accuracy": statistics.fmean(final[v]), "ci95": confidence_interval(final[v]),
            "per_seed": final[v], "minus_default": statistics.fmean(gains[v]),
            "minus_default_ci95": confidence_interval(gains[v], (-1.0, 1.0)),
            # Training time over every round and seed, beside the default's in the same run: what it costs.
            "train_s": round(sum(seconds[v]), 1),
            "train_time_vs_default": round(sum(seconds[v]) / sum(seconds["default"]), 2)}
        for v in VARIANTS
    }  # fmt: skip
    # An option beats the default only when its paired gain's interval lies above zero.
    better = [v for v in VARIANTS if v != "default" and variants[v]["minus_default_ci95"][0] > 0]
    return {
        "benchmark": "reward-options",
        "model": model,
        "settings": settings | {"seeds": seeds, "test_prompts": test_prompts, "labels": rounds * budget},
        "variants": variants,
        "better_than_default": better,
        "targets": {"no_option_beats_the_default": True},
        "targets_met": not better,
        "wall_time_s": round(time.monotonic() - began, 1),
    }
