import json
import math

import pytest

from services.controller.report import VersionSamples, build_report
from services.controller.report_render import write_report
from services.controller.report_statistics import (
    bootstrap_interval,
    distinct_n,
    pairwise_win_rate,
    per_prompt_win_rates,
)
from services.sim.gold import friendly_and_on_topic, topic_words


def test_win_rate_counts_every_pair_and_ties_half():
    assert pairwise_win_rate([2.0, 0.0], [1.0]) == 0.5
    assert pairwise_win_rate([1.0], [1.0]) == 0.5
    assert pairwise_win_rate([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert per_prompt_win_rates([[1.0], [0.0]], [[0.0], [1.0]]) == [1.0, 0.0]
    with pytest.raises(ValueError):
        per_prompt_win_rates([[1.0]], [])


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_prompts():
    few = [0.9, 0.6, 0.8, 0.7]
    low, high = bootstrap_interval(few, seed=1)
    assert low <= sum(few) / len(few) <= high and low >= 0.6 and high <= 0.9
    many_low, many_high = bootstrap_interval(few * 25, seed=1)
    assert many_high - many_low < high - low
    assert bootstrap_interval(few, seed=1) == (low, high)  # seeded: the report is reproducible
    assert bootstrap_interval([0.5] * 10) == (0.5, 0.5)


def test_distinct_n_falls_when_answers_repeat_themselves():
    varied = ["the sun is warm today", "rain falls on green hills"]
    repeated = ["great great great great", "great great great great"]
    assert distinct_n(varied, 1) == 1.0 and distinct_n(repeated, 1) == 1 / 8
    assert distinct_n(repeated, 2) == 1 / 6
    assert distinct_n([""], 2) == 0.0


def test_demo_gold_prefers_warm_on_topic_answers():
    prompt = "Give me one tip about growing tomatoes."
    assert topic_words(prompt) == {"growi", "tomat"}
    warm_on_topic = friendly_and_on_topic(prompt, "Water your tomato plants well when growing them; they love sun!")
    warm_off_topic = friendly_and_on_topic(prompt, "Have a lovely day, friend! You are wonderful.")
    plain_on_topic = friendly_and_on_topic(prompt, "Tomatoes need water when growing.")
    hostile = friendly_and_on_topic(prompt, "Growing tomatoes is a stupid, awful waste of time.")
    assert warm_on_topic > plain_on_topic > hostile and warm_on_topic > warm_off_topic
    # More warmth keeps paying where VADER's compound score has long saturated.
    warmer = friendly_and_on_topic(prompt, "Growing tomatoes is a joy: love them, enjoy them, great fun!")
    assert warmer > warm_on_topic


def record(number: int, version: str, decision: str, agreement: float = 0.72) -> dict:
    return {
        "iteration": number, "stage": "done", "rankings": 24, "agreement": agreement, "annotator_temperature": 0.1,
        "reward_version": f"reward-000{number + 1}", "rm_accuracy": 0.7, "rm_reasons": [],
        "rm_baseline_accuracy": 0.6, "rm_agreement": agreement, "rm_heldout_pairs": 30,
        "policy_version": version, "win_rate": 0.7 if decision == "promote" else 0.4, "kl": 0.5 * number,
        "candidate_mean_reward": 0.3 * number, "baseline_mean_reward": 0.1, "gold_win_rate": 0.7,
        "decision": decision, "policy_reasons": [] if decision == "promote" else ["policy win-rate 0.400 < 0.55"],
        "seconds": {"select": 10.0, "policy": 50.0},
    }  # fmt: skip


def samples(version: str, level: float) -> VersionSamples:
    texts = [[f"answer {version} {p} {s}" for s in range(3)] for p in range(5)]
    return VersionSamples(version, texts, [[level + 0.01 * s for s in range(3)] for _ in range(5)])


def test_the_report_holds_the_figures_and_writes_every_file(tmp_path):
    history = [record(1, "policy-0002", "promote") | {"human_win_rate": 0.75, "judges_agreement": {
                   "proxy_people": 0.8, "proxy_gold": 0.7, "people_gold": 0.9}},
               record(2, "policy-0003", "rollback", agreement=math.nan) | {
                   "from_prediction": 6, "untouched_prerankings": 4, "rm_untouched_excluded": 4},
               {"iteration": 3, "stage": "collect"}]  # fmt: skip
    drawn = {"policy-0001": samples("policy-0001", 0.0), "policy-0002": samples("policy-0002", 1.0),
             "policy-0003": samples("policy-0003", 0.5)}  # fmt: skip
    on_gold = {"reward-0001": 0.5, "reward-0002": 0.71, "reward-0003": 0.705}  # the base, then each round's
    reward_models = {
        v: {"accuracy": a, "ci": [a - 0.05, a + 0.05], "pairs": 40, "prompts": 5} for v, a in on_gold.items()
    }
    policies = [{"version": "policy-0001", "proxy": 0.1, "conservative": -0.2, "spread": 0.3, "gold": 0.0},
                {"version": "policy-0002", "proxy": 0.9, "conservative": 0.5, "spread": 0.4, "gold": 1.0}]  # fmt: skip
    report = build_report(history, drawn, "policy-0001", "policy-0002", wall_time_s=1200.0, reward_models=reward_models,
                          policies=policies, conservative_lambda=1.0)  # fmt: skip

    assert report["gold_win_rate"] == 1.0 and report["gold_win_rate_ci"] == [1.0, 1.0]
    assert [r["iteration"] for r in report["iterations"]] == [1, 2]  # the unfinished one is not reported
    first, second = report["iterations"]
    assert first["rm_accuracy_vs_annotators"] == pytest.approx(0.7 / 0.72)
    assert (first["rm_active_accuracy"], first["rm_agreement"], first["rm_gold_accuracy"]) == (0.6, 0.72, 0.71)
    assert first["gold_mean"] == pytest.approx(1.01) and second["decision"] == "rollback"
    assert second["reasons"] == ["policy win-rate 0.400 < 0.55"]
    assert (report["promotions"], report["rollbacks"], report["samples_per_prompt"]) == (1, 1, 3)
    assert report["targets_met"]["gold_win_rate"] and report["targets_met"]["wall_time_s"]
    assert not report["targets_met"]["rm_accuracy_vs_annotators"]  # the last iteration's agreement is unknown
    assert not report["targets_met"]["every_policy_promoted"] and report["targets_met"]["every_reward_model_promoted"]
    assert report["targets_met"]["rm_gold_accuracy_never_falls"]  # 0.71 -> 0.705 is within the 0.01 allowed
    assert [m["version"] for m in report["reward_models_on_gold_set"]] == list(on_gold)

    written = write_report(report, tmp_path / "out")
    assert all(path.stat().st_size > 0 for path in written)
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["iterations"][1]["annotator_agreement"] is None  # NaN is stored as null, not invalid JSON
    assert stored["gold_win_rate_ci"] == [1.0, 1.0]
    for image in ("scores.png", "reward_model.png", "rankings.png"):
        assert (tmp_path / "out" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "gold win-rate 1.000 (95% bootstrap CI 1.000 to 1.000)" in markdown
    # How many rankings started from a pre-ranking, were submitted untouched, and were kept out of training.
    assert "| 2 | 24 | 6 | 4 | 4 | n/a | 30 | 0.700 | 0.600 | n/a |" in markdown and "![" in markdown
    agree = "proxy vs people 0.80, proxy vs gold 0.70, people vs gold 0.90"
    assert f"Iteration 1, judges on the evaluation tasks agree: {agree}" in markdown
    assert "fixed set of 40 pairs: reward-0001 0.500, reward-0002 0.710, reward-0003 0.705" in markdown
    assert "| policy-0002 | 0.900 | 0.500 | 0.400 | 1.000 |" in markdown  # proxy, conservative, spread, gold
    assert "conservative (mean - 1 x spread)" in markdown
    assert (tmp_path / "out" / "report.html").read_text().count("<table>") == 2


def test_the_demo_bars_count_stages_across_iterations():
    from services.controller.progress import RichLoopProgress

    bars = RichLoopProgress(iterations=2)
    try:
        bars.stage(2, "reward")  # iteration 1's 8 stages, then select, tasks and collect of iteration 2
        assert bars.bars.tasks[bars.overall].completed == 11 and bars.bars.tasks[bars.overall].total == 16
        bars.steps("policy grpo step", 5, 20)
        assert (bars.bars.tasks[bars.work].completed, bars.bars.tasks[bars.work].total) == (5, 20)
    finally:
        bars.close()
    assert bars.bars.tasks[bars.overall].completed == 16


class LengthScorer:
    """A stand-in reward client: longer answers score higher, whatever the version."""

    def __init__(self):
        self.calls = []

    def score_with_spread(self, items, version=""):
        self.calls.append((version, len(items)))
        return [float(len(response)) for _, response in items], [], version


def test_the_fixed_gold_set_pairs_answers_of_every_version_and_scores_each_reward_model_once():
    from services.controller.report_reward_models import gold_comparisons, reward_models_on

    drawn = {
        "policy-0001": VersionSamples("policy-0001", [["a", "bb"], ["x", "yy"]], [[0.0, 1.0], [0.5, 0.5]]),
        "policy-0002": VersionSamples("policy-0002", [["ccc", "a"], ["zzz", "x"]], [[2.0, 0.0], [0.0, 0.5]]),
    }
    per_prompt = gold_comparisons(drawn, ["p", "q"])
    # Prompt p: answers a (0), bb (1), ccc (2) from both versions -> 3 pairs, best first by the gold.
    assert {(c.chosen, c.rejected) for c in per_prompt[0]} == {("bb", "a"), ("ccc", "a"), ("ccc", "bb")}
    # Prompt q: x and yy tie (no pair), zzz is worse than both.
    assert {(c.chosen, c.rejected) for c in per_prompt[1]} == {("x", "zzz"), ("yy", "zzz")}
    client = LengthScorer()
    result = reward_models_on(client, ["reward-0001", "reward-0002"], per_prompt)
    assert result["reward-0001"]["accuracy"] == pytest.approx((1.0 + 0.0) / 2)  # length agrees on p, not on q
    assert result["reward-0001"]["pairs"] == 5 and result["reward-0001"]["prompts"] == 2
    assert [version for version, _ in client.calls] == ["reward-0001", "reward-0002"]  # one Score call each
