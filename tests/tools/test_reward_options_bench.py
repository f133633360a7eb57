"""`rlhf-loop bench reward-options` on the tiny model: each option against the default, on the same labels."""

import math
import statistics

from services.sim.gold import vader_positivity
from services.tools.reward_options_bench import VARIANTS, run_reward_options_benchmark
from services.tools.selection_bench import candidate_pool


def test_a_previous_policy_writes_the_less_friendly_half_of_each_prompts_candidates():
    pool = candidate_pool(60, 4, seed=3, previous_shift=1)
    active = statistics.fmean(vader_positivity(p, c) for p, cands in pool for c in cands[:2])
    previous = statistics.fmean(vader_positivity(p, c) for p, cands in pool for c in cands[2:])
    assert active > previous + 0.1  # one tone step is about a third of VADER's range here
    same = candidate_pool(60, 4, seed=3)
    assert same != pool and [p for p, _ in same] == [p for p, _ in pool]  # same prompts, other candidates


def test_every_option_is_measured_against_the_default_on_the_same_seeds(tiny_model_dir):
    report = run_reward_options_benchmark(
        model=str(tiny_model_dir), seeds=2, rounds=2, budget=3, k=3, test_prompts=8,
        train={"epochs": 3, "learning_rate": 1e-3, "batch_size": 16}, progress=lambda _: None,
    )  # fmt: skip
    assert set(report["variants"]) == set(VARIANTS) and report["settings"]["labels"] == 6
    for figures in report["variants"].values():
        low, high = figures["ci95"]
        assert len(figures["per_seed"]) == 2 and low <= figures["accuracy"] <= high
    assert report["variants"]["default"]["minus_default"] == 0.0
    assert report["variants"]["default"]["train_time_vs_default"] == 1.0
    assert all(
        figures["train_s"] > 0 and figures["train_time_vs_default"] > 0 for figures in report["variants"].values()
    )
    assert report["targets_met"] == (report["better_than_default"] == []) and not math.isnan(report["wall_time_s"])
