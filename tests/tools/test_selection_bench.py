"""`rlhf-loop bench selection` on the tiny model: every strategy gets the same budget and the same first round."""

import itertools
import math
import statistics

from services.sim.gold import vader_positivity
from services.tools.selection_bench import STRATEGIES, candidate_pool, gold_ranking, run_selection_benchmark


def test_the_pool_mixes_prompts_with_near_alike_and_far_apart_candidates():
    pool = candidate_pool(30, 4, seed=1)
    gaps = sorted(
        statistics.fmean(abs(vader_positivity(p, a) - vader_positivity(p, b)) for a, b in itertools.combinations(c, 2))
        for p, c in pool
    )
    assert gaps[-1] > 3 * gaps[len(gaps) // 4]  # measured 0.77 vs 0.23: some prompts teach far more than others
    assert candidate_pool(30, 4, seed=1) == pool and candidate_pool(30, 4, seed=2) != pool
    ranked = gold_ranking("p", ["Great question. Happy to help!", "Go away.", "Practice helps."])
    assert ranked.tiers == ((0,), (2,), (1,))  # by the gold, best first


def test_each_strategy_is_measured_over_seeds_from_the_same_start(tiny_model_dir):
    report = run_selection_benchmark(
        model=str(tiny_model_dir), seeds=2, rounds=2, budget=4, pool=12, k=3, members=2, test_prompts=8,
        train={"epochs": 3, "learning_rate": 1e-3, "batch_size": 16}, progress=lambda _: None,
    )  # fmt: skip
    assert set(report["strategies"]) == set(STRATEGIES) and report["settings"]["labels"] == 8
    first_rounds = {s: r["per_round"][0] for s, r in report["strategies"].items()}
    # The first round is random for everyone: the same prompts, labels and seeds, so the same model.
    assert len({round(v, 9) for v in first_rounds.values()}) == 1
    for figures in report["strategies"].values():
        low, high = figures["ci95"]
        assert len(figures["per_seed"]) == 2 and low <= figures["accuracy"] <= high
        assert 0.0 <= figures["accuracy"] <= 1.0
    assert report["strategies"]["random"]["minus_random"] == 0.0
    assert report["best"] in STRATEGIES and report["default"] == "uncertainty"
    assert report["targets_met"] == (report["best"] == "uncertainty") and not math.isnan(report["wall_time_s"])
