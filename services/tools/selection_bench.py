"""`rlhf-loop bench selection`: on the same label budget, does choosing prompts by uncertainty pay?

Each strategy starts from the same reward model and the same first round of
randomly chosen prompts, then picks `budget` prompts per round from the same
pool -- by the reward model's order uncertainty, by its ensemble's
disagreement, or at random -- has them ranked by a simulated annotator, and
retrains (warm start, every label so far). After the last round the reward
model is scored against the gold on one fixed comparison set. Seeds repeat
the whole run with other pools, annotators and training seeds; the report
gives each strategy's mean with a 95% confidence interval over seeds, and
each one's paired difference from random selection on the same seeds.

The world is synthetic, so it runs in minutes: each candidate is a few
friendly, hostile and neutral sentences (the phrases of the built-in
preference set), the gold is VADER's compound sentiment, and the annotator
orders by gold plus Gumbel noise calibrated to people's ~73% agreement.
Prompts differ in how far apart their candidates are -- some pairs are
near-ties no label can settle -- which is where selection can matter. Every
strategy trains the same ensemble reward model (`members` heads), so they
differ in the prompts only.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from services.controller.loop_config import LoopConfig
from services.controller.prompt_selection import mean_spread, order_uncertainty, select_prompts
from services.core.rankings import Ranking
from services.models.loading import load_reward_model, resolve_model
from services.reward.ranking import rank_candidates
from services.reward.scorer import RewardScorer, ScoreItem, member_mean, member_spread
from services.reward.train_config import RewardTrainConfig
from services.reward.trainer import prepare_split, train_reward_model
from services.sim.gold import vader_positivity
from services.sim.prompts import TOPICS
from services.sim.simulated_annotators import calibrate_temperature, noisy_order
from services.sim.synthetic_rankings import FILLER, FRIENDLY, HOSTILE
from services.tools.progress import stderr_progress

STRATEGIES = ("uncertainty", "disagreement", "random")
TEST_SEED = 10_000  # the fixed comparison set is the same for every strategy and seed
GOLD_STEP = 0.05  # gold scores closer than this tie in the comparison set: no judge can order them
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}  # Student t, 95%
_say = stderr_progress("bench selection")


def candidate_pool(n_prompts: int, k: int, seed: int, previous_shift: int = 0) -> list[tuple[str, list[str]]]:
    """Prompts with k candidates each; per prompt, how far apart the candidates' tones are is drawn at random.

    `previous_shift` > 0 writes the second half of each prompt's candidates by a
    "previous policy" whose tones are centred that much lower (less friendly).
    """
    rng = random.Random(seed)
    pool = []
    for index in range(n_prompts):
        prompt = f"Can you tell me about {TOPICS[index % len(TOPICS)]}? (question {seed}-{index})"
        centre, spread = rng.randint(-1, 1), rng.choice((0, 1, 2))
        candidates = []
        for position in range(k):
            tone = centre - (previous_shift if position >= k // 2 else 0) + rng.randint(-spread, spread)
            friendly, hostile = max(tone, 0), max(-tone, 0)
            sentences = rng.sample(FRIENDLY, min(friendly, 3)) + rng.sample(HOSTILE, min(hostile, 3))
            sentences += rng.sample(FILLER, 2)
            rng.shuffle(sentences)
            candidates.append(" ".join(sentences))
        pool.append((prompt, candidates))
    return pool


def gold_ranking(prompt: str, candidates: list[str], order: list[int] | None = None) -> Ranking:
    """Tiers by the gold (rounded to GOLD_STEP, so near-ties tie), or by a given order (an annotator's)."""
    if order is not None:
        return Ranking(prompt, tuple(candidates), tuple((i,) for i in order), annotator="simulated")
    levels = [round(vader_positivity(prompt, c) / GOLD_STEP) for c in candidates]
    tiers = [
        tuple(i for i in range(len(candidates)) if levels[i] == level) for level in sorted(set(levels), reverse=True)
    ]
    return Ranking(prompt, tuple(candidates), tuple(tiers), annotator="gold")


def confidence_interval(values: list[float], bounds: tuple[float, float] = (0.0, 1.0)) -> list[float]:
    """Mean +- Student t x standard error: the 95% confidence interval over seeds, kept inside `bounds`."""
    if len(values) < 2:
        return [float("nan"), float("nan")]
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    mean = statistics.fmean(values)
    return [max(mean - half, bounds[0]), min(mean + half, bounds[1])]


class SelectionRun:
    """One strategy on one seed: rounds of select -> annotate -> retrain."""

    def __init__(self, base: Path, strategy: str, seed: int, settings: dict, scratch: Path):
        self.base, self.strategy, self.seed, self.settings, self.scratch = base, strategy, seed, settings, scratch
        self.pool = candidate_pool(settings["pool"], settings["k"], seed)
        gold = [[vader_positivity(p, c) for c in cands] for p, cands in self.pool]
        self.temperature = calibrate_temperature(gold, 0.73)
        self.annotator = random.Random(seed * 7 + 1)

    def run(self, test: list[Ranking]) -> list[float]:
        """Accuracy against the gold on `test` after each round."""
        s = self.settings
        labelled: list[Ranking] = []
        remaining = list(range(len(self.pool)))
        current, accuracies = self.base, []
        for number in range(s["rounds"]):
            if number == 0:  # the same random first round for every strategy: the base model knows nothing
                chosen = random.Random(self.seed).sample(remaining, s["budget"])
            else:
                chosen = self._select(current, remaining, random.Random(self.seed * 100 + number))
            remaining = [i for i in remaining if i not in set(chosen)]
            for i in chosen:
                prompt, candidates = self.pool[i]
                gold = [vader_positivity(prompt, c) for c in candidates]
                labelled.append(gold_ranking(prompt, candidates, noisy_order(gold, self.temperature, self.annotator)))
            config = RewardTrainConfig(**s["train"], seed=self.seed, ensemble_size=s["members"])
            output = self.scratch / f"{self.strategy}-{self.seed}-{number}"
            outcome = train_reward_model(current, prepare_split(labelled, config, test), config, output)
            current = output
            accuracies.append(outcome.heldout_accuracy)
        return accuracies

    def _select(self, model: Path, remaining: list[int], rng: random.Random) -> list[int]:
        if self.strategy == "random":
            return rng.sample(remaining, self.settings["budget"])
        scorer = RewardScorer.load(model, "bench", max_length=128)
        values = []
        for i in remaining:
            prompt, candidates = self.pool[i]
            members = scorer.score_members([ScoreItem(prompt, c) for c in candidates])
            if self.strategy == "disagreement":
                values.append(mean_spread([member_spread(m) for m in members]))
            else:
                values.append(order_uncertainty(rank_candidates([member_mean(m) for m in members], "").probabilities))
        picked = select_prompts(values, self.settings["budget"], self.strategy, 0.0, rng)
        return [remaining[p.index] for p in picked]


def save_base_model(model: str, members: int, path: Path) -> Path:
    """The untrained reward model with `members` heads, seeded, saved where every run starts from it."""
    torch.manual_seed(0)
    backbone, tokenizer = load_reward_model(resolve_model(model), members=members)
    backbone.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_selection_benchmark(
    model: str = "minilm",
    seeds: int = 3,
    rounds: int = 3,
    budget: int = 12,
    pool: int = 120,
    k: int = 4,
    members: int = 4,
    test_prompts: int = 60,
    train: dict | None = None,
    progress: Callable[[str], None] = _say,
) -> dict:
    began = time.monotonic()
    settings = {"rounds": rounds, "budget": budget, "pool": pool, "k": k, "members": members,
                "train": train or {"epochs": 2, "learning_rate": 1e-4, "batch_size": 32}}  # fmt: skip
    if rounds < 2 or seeds < 2 or budget * rounds > pool:
        raise ValueError("need rounds >= 2, seeds >= 2 and budget x rounds <= pool")
    test = [gold_ranking(p, c) for p, c in candidate_pool(test_prompts, k, TEST_SEED)]
    results: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-selection-") as tmp:
        scratch = Path(tmp)
        base = save_base_model(model, members, scratch / "base")
        for seed in range(seeds):
            for strategy in STRATEGIES:
                progress(f"seed {seed + 1}/{seeds}: {strategy}")
                results[strategy].append(SelectionRun(base, strategy, seed, settings, scratch).run(test))
    final = {s: [run[-1] for run in runs] for s, runs in results.items()}
    gains = {s: [a - b for a, b in zip(final[s], final["random"], strict=True)] for s in STRATEGIES}
    strategies = {
        s: {"accuracy": statistics.fmean(final[s]), "ci95": confidence_interval(final[s]), "per_seed": final[s],
            "per_round": [statistics.fmean(run[r] for run in results[s]) for r in range(rounds)],
            "minus_random": statistics.fmean(gains[s]), "minus_random_ci95": confidence_interval(gains[s], (-1.0, 1.0))}
        for s in STRATEGIES
    }  # fmt: skip
    best = max(STRATEGIES, key=lambda s: strategies[s]["accuracy"])
    default = LoopConfig.selection  # the loop's default strategy
    return {
        "benchmark": "selection",
        "model": model,
        "settings": settings | {"seeds": seeds, "test_prompts": test_prompts, "labels": rounds * budget},
        "strategies": strategies,
        "best": best,
        "default": default,
        "targets": {"default_is_best": True},
        "targets_met": best == default,
        "wall_time_s": round(time.monotonic() - began, 1),
    }
