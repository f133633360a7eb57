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
        "policy_version": version, "win_rate": 0.7 if decision == "promote" else 0.4, "kl": 0.5 * number,
        "candidate_mean_reward": 0.3 * number, "baseline_mean_reward": 0.1, "gold_win_rate": 0.7,
        "decision": decision, "policy_reasons": [] if decision == "promote" else ["policy win-rate 0.400 < 0.55"],
        "seconds": {"select": 10.0, "policy": 50.0},
    }  # fmt: skip


def samples(version: str, level: float) -> VersionSamples:
    texts = [[f"answer {version} {p} {s}" for s in range(3)] for p in range(5)]
    return VersionSamples(version, texts, [[level + 0.01 * s for s in range(3)] for _ in range(5)])


def test_the_report_holds_the_figures_and_writes_every_file(tmp_path):
    history = [record(1, "policy-0002", "promote"), record(2, "policy-0003", "rollback", agreement=math.nan),
               {"iteration": 3, "stage": "collect"}]  # fmt: skip
    drawn = {"policy-0001": samples("policy-0001", 0.0), "policy-0002": samples("policy-0002", 1.0),
             "policy-0003": samples("policy-0003", 0.5)}  # fmt: skip
    report = build_report(history, drawn, "policy-0001", "policy-0002", wall_time_s=1200.0)

    assert report["gold_win_rate"] == 1.0 and report["gold_win_rate_ci"] == [1.0, 1.0]
    assert [r["iteration"] for r in report["iterations"]] == [1, 2]  # the unfinished one is not reported
    first, second = report["iterations"]
    assert first["rm_accuracy_vs_annotators"] == pytest.approx(0.7 / 0.72)
    assert first["gold_mean"] == pytest.approx(1.01) and second["decision"] == "rollback"
    assert second["reasons"] == ["policy win-rate 0.400 < 0.55"]
    assert (report["promotions"], report["rollbacks"], report["samples_per_prompt"]) == (1, 1, 3)
    assert report["targets_met"]["gold_win_rate"] and report["targets_met"]["wall_time_s"]
    assert not report["targets_met"]["rm_accuracy_vs_annotators"]  # the last iteration's agreement is unknown

    written = write_report(report, tmp_path / "out")
    assert all(path.stat().st_size > 0 for path in written)
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["iterations"][1]["annotator_agreement"] is None  # NaN is stored as null, not invalid JSON
    assert stored["gold_win_rate_ci"] == [1.0, 1.0]
    for image in ("scores.png", "reward_model.png", "rankings.png"):
        assert (tmp_path / "out" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "gold win-rate 1.000 (95% bootstrap CI 1.000 to 1.000)" in markdown
    assert "| 2 | 24 | n/a |" in markdown and "![" in markdown
    assert "<table>" in (tmp_path / "out" / "report.html").read_text()


def test_the_demo_bars_count_stages_across_iterations():
    from services.controller.progress import RichLoopProgress

    bars = RichLoopProgress(iterations=2)
    try:
        bars.stage(2, "reward")  # iteration 1's 7 stages, then select, tasks and collect of iteration 2
        assert bars.bars.tasks[bars.overall].completed == 10 and bars.bars.tasks[bars.overall].total == 14
        bars.steps("policy grpo step", 5, 20)
        assert (bars.bars.tasks[bars.work].completed, bars.bars.tasks[bars.work].total) == (5, 20)
    finally:
        bars.close()
    assert bars.bars.tasks[bars.overall].completed == 14
