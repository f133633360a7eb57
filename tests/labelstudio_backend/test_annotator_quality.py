"""Annotator quality: hand-computed figures of the pure report, the table, and the CLI against a real reward service."""

import json
import random
import subprocess
import sys

import pytest

from labelstudio_backend.annotator_quality import Share, annotator_quality, tasks_to_score, wilson_interval
from labelstudio_backend.annotator_quality_table import render_table
from labelstudio_backend.preference_store import PreferenceStore, StoredPreference, pairwise_agreement
from services.cli import main
from services.core.rankings import Ranking

ABCD = ("A", "B", "C", "D")


def pref(annotation_id, task_id, annotator, tiers, candidates=ABCD, project_id=1, **context) -> StoredPreference:
    ranking = Ranking(f"prompt {task_id}", tuple(candidates), tuple(tuple(t) for t in tiers), annotator=annotator)
    return StoredPreference(annotation_id, project_id, task_id, annotator, ranking, **context)


def crowd() -> list[StoredPreference]:
    """Tasks 1 and 2, candidates A-D. w and x: A>B>C>D on both; y swaps A and B on task 1; z reverses everything.

    y's task-2 row lists its candidates in another order (D, C, B, A): pairs are
    keyed by text, so it is the same A>B>C>D.
    """
    return [
        pref(1, 1, "w", [[0], [1], [2], [3]], lead_time_s=10.0),
        pref(2, 1, "x", [[0], [1], [2], [3]], lead_time_s=5.0, from_prediction=True, prediction_distance=0.0),
        pref(3, 1, "y", [[1], [0], [2], [3]]),
        pref(4, 1, "z", [[3], [2], [1], [0]], lead_time_s=100.0),
        pref(5, 2, "w", [[0], [1], [2], [3]], lead_time_s=30.0, from_prediction=True, prediction_distance=1 / 6),
        pref(6, 2, "x", [[0], [1], [2], [3]], from_prediction=True),  # pre-ranked, distance unknown
        pref(7, 2, "y", [[3], [2], [1], [0]], candidates=("D", "C", "B", "A")),
        pref(8, 2, "z", [[3], [2], [1], [0]], lead_time_s=2.0),
    ]


def by_name(report) -> dict:
    return {a.annotator: a for a in report.per_annotator}


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # never below 0, unlike p ± 2se
    assert wilson_interval(10, 10)[1] == 1.0
    assert Share.of(0, 0) == Share(0, 0, None, None, None)


def test_the_outlier_agrees_with_nobody_and_the_others_with_each_other():
    annotators = by_name(annotator_quality(crowd()))
    # 12 pairs (6 a task); each annotator compared with 3 others on each: 36 comparisons.
    # w: z disagrees on all 12, y on (1, A, B): 36 - 13 = 23. x is the same as w.
    assert (annotators["w"].agreement.hits, annotators["w"].agreement.n) == (23, 36)
    assert (annotators["x"].agreement.hits, annotators["x"].agreement.n) == (23, 36)
    # y: 11 of 12 with w and with x, and only (1, A, B) with z.
    assert annotators["y"].agreement.hits == 23
    assert {o: (s.hits, s.n) for o, s in annotators["y"].agreement_with.items()} == {
        "w": (11, 12), "x": (11, 12), "z": (1, 12)
    }  # fmt: skip
    assert (annotators["z"].agreement.hits, annotators["z"].agreement.n) == (1, 36)
    # Leave-one-out majority: on (1, A, B) w's others are x(+) y(-) z(-), a majority against w.
    assert (annotators["w"].majority_agreement.hits, annotators["w"].majority_agreement.n) == (11, 12)
    assert (annotators["y"].majority_agreement.hits, annotators["y"].majority_agreement.n) == (11, 12)
    assert (annotators["z"].majority_agreement.hits, annotators["z"].majority_agreement.n) == (0, 12)
    assert annotators["z"].majority_agreement.share == 0.0 and annotators["w"].majority_agreement.share > 0.9
    # The interval says what 12 pairs can tell: z is certainly below 1/4, w certainly above 1/2.
    assert annotators["z"].majority_agreement.high < 0.25 < 0.5 < annotators["w"].majority_agreement.low
    assert annotators["w"].ordered_pairs == 12 and annotators["w"].annotations == annotators["w"].tasks == 2


def test_overall_agreement_is_pairwise_agreement_of_the_store():
    report = annotator_quality(crowd())
    stats = pairwise_agreement(crowd())
    # 12 pairs x 6 annotator pairs; each agreement counted once per side above: (23 + 23 + 23 + 1) / 2.
    assert (report.agreement.hits, report.agreement.n) == (35, 72) == (35, stats["compared_pairs"])
    assert report.agreement.share == pytest.approx(stats["agreement"])
    assert (report.annotations, report.annotators, report.tasks, report.pairs) == (8, 4, 2, 12)
    assert (report.majority_agreement.hits, report.majority_agreement.n) == (33, 48)


def test_with_three_annotators_a_split_among_the_others_is_no_majority():
    report = annotator_quality([p for p in crowd() if p.annotator != "w"])
    annotators = by_name(report)
    # x's others are y and z: z reverses y everywhere but (1, A, B), where both oppose x.
    assert (annotators["x"].majority_agreement.hits, annotators["x"].majority_agreement.n) == (0, 1)
    # z's others x and y agree on 11 pairs (z opposes them) and split on (1, A, B).
    assert (annotators["z"].majority_agreement.hits, annotators["z"].majority_agreement.n) == (0, 11)


def test_reward_agreement_counts_the_pairs_the_model_orders():
    # Task 1: the model says A>B>C>D; task 2: A>B, C = D (a tie: that pair is left out).
    scores = {1: [4.0, 3.0, 2.0, 1.0], 2: [4.0, 3.0, 2.0, 2.0]}
    report = annotator_quality(crowd(), scores, "reward-0003")
    annotators = by_name(report)
    assert (annotators["w"].reward_agreement.hits, annotators["w"].reward_agreement.n) == (11, 11)
    assert (annotators["y"].reward_agreement.hits, annotators["y"].reward_agreement.n) == (10, 11)
    assert (annotators["z"].reward_agreement.hits, annotators["z"].reward_agreement.n) == (0, 11)
    assert (report.reward_agreement.hits, report.reward_agreement.n) == (32, 44)
    assert report.reward_version == "reward-0003"
    # Scores are read against the candidates of the task's first row, whatever order later rows list them in.
    assert tasks_to_score(crowd()) == {1: ("prompt 1", ABCD), 2: ("prompt 2", ABCD)}
    # A task without scores (or with the wrong number) is left out, not guessed.
    partial = by_name(annotator_quality(crowd(), {1: [4.0, 3.0, 2.0, 1.0], 2: [1.0]}))
    assert partial["w"].reward_agreement.n == 6
    # Without scores the figure was not asked for: None, not a share of nothing.
    assert annotator_quality(crowd()).reward_agreement is None
    assert by_name(annotator_quality(crowd()))["w"].reward_agreement is None


def test_lead_time_median_total_and_prediction_use():
    report = annotator_quality(crowd())
    annotators = by_name(report)
    assert vars(annotators["w"].lead_time) == {"n": 2, "median_s": 20.0, "total_s": 40.0}
    assert vars(annotators["x"].lead_time) == {"n": 1, "median_s": 5.0, "total_s": 5.0}
    assert vars(annotators["y"].lead_time) == {"n": 0, "median_s": None, "total_s": None}
    assert vars(annotators["z"].lead_time) == {"n": 2, "median_s": 51.0, "total_s": 102.0}
    # The store's: 2, 5, 10, 30, 100 -- the median is robust to the one slow task.
    assert vars(report.lead_time) == {"n": 5, "median_s": 10.0, "total_s": 147.0}

    x = annotators["x"].predictions
    assert (x.rankings, x.from_prediction, x.untouched, x.distance_n, x.mean_distance) == (2, 2, 1, 1, 0.0)
    w = annotators["w"].predictions
    assert (w.from_prediction, w.untouched, w.distance_n) == (1, 0, 1) and w.mean_distance == pytest.approx(1 / 6)
    assert annotators["z"].predictions.mean_distance is None and annotators["z"].predictions.from_prediction == 0
    overall = report.predictions
    assert (overall.from_prediction, overall.untouched, overall.distance_n) == (3, 1, 2)
    assert overall.mean_distance == pytest.approx(1 / 12)


def test_position_bias_against_chance():
    prefs = [
        # p puts the first-shown candidate in the best tier every time.
        pref(1, 1, "p", [[2], [0], [1], [3]], shown_order=(2, 0, 1, 3)),
        pref(2, 2, "p", [[3], [0], [1], [2]], shown_order=(3, 2, 1, 0)),
        pref(3, 3, "p", [[1], [0], [2], [3]], shown_order=(1, 0, 2, 3)),
        pref(4, 4, "p", [[0, 1], [2, 3]], shown_order=(0, 1, 2, 3)),  # a best tier of two: chance 2/4
        # q never does.
        pref(5, 1, "q", [[0], [1], [3], [2]], shown_order=(2, 0, 1, 3)),
        pref(6, 2, "q", [[0], [1], [2], [3]], shown_order=(3, 2, 1, 0)),
        # Left out: an old row (no shown order), a pre-ranked one (first shown = the model's favourite), no tiers.
        pref(7, 3, "q", [[0], [1], [2], [3]]),
        pref(8, 4, "q", [[0], [1], [2], [3]], shown_order=(0, 1, 2, 3), from_prediction=True, prediction_distance=0.0),
        pref(9, 5, "q", [], shown_order=(0, 1, 2, 3)),
    ]
    report = annotator_quality(prefs)
    p, q = by_name(report)["p"].position_bias, by_name(report)["q"].position_bias
    assert (p.first_in_best.hits, p.first_in_best.n) == (4, 4) and p.chance == pytest.approx(5 / 16)
    assert p.first_in_best.low == pytest.approx(wilson_interval(4, 4)[0])  # 0.51: 4 rankings say little yet
    assert (q.first_in_best.hits, q.first_in_best.n) == (0, 2) and q.chance == pytest.approx(1 / 4)
    overall = report.position_bias
    assert (overall.first_in_best.hits, overall.first_in_best.n) == (4, 6)
    assert overall.chance == pytest.approx((5 / 4 + 2 / 4) / 6)


def test_one_annotator_has_no_agreement_and_no_lead_times_give_none():
    report = annotator_quality([pref(1, 1, "solo", [[0], [1], [2], [3]]), pref(2, 2, "solo", [[0, 1, 2, 3]])])
    solo = report.per_annotator[0]
    assert solo.ordered_pairs == 6  # the all-tied ranking orders nothing
    assert solo.agreement == Share(0, 0, None, None, None) and solo.agreement_with == {}
    assert solo.majority_agreement.share is None and report.agreement.share is None
    assert vars(solo.lead_time) == {"n": 0, "median_s": None, "total_s": None}
    assert solo.position_bias.first_in_best.n == 0 and solo.position_bias.chance is None
    assert solo.predictions.mean_distance is None
    empty = annotator_quality([])
    assert (empty.annotations, empty.per_annotator, empty.agreement.n, empty.lead_time.median_s) == (0, [], 0, None)


def test_the_report_serializes_to_json_and_renders_one_row_per_annotator():
    report = annotator_quality(crowd(), {1: [4.0, 3.0, 2.0, 1.0], 2: [4.0, 3.0, 2.0, 2.0]}, "reward-0003")
    again = json.loads(json.dumps(report.to_dict()))
    assert [a["annotator"] for a in again["per_annotator"]] == ["w", "x", "y", "z"]
    assert again["per_annotator"][3]["majority_agreement"] == {"hits": 0, "n": 12, "share": 0.0, "low": 0.0,
                                                               "high": pytest.approx(0.2425, abs=1e-4)}  # fmt: skip
    table = render_table(report, 1).splitlines()
    assert "reward model reward-0003" in table[0]
    rows = {line.split()[0]: line for line in table[4:]}
    assert list(rows) == ["w", "x", "y", "z", "(all)"]
    assert "0.00 [0.00-0.24] n=12" in rows["z"] and "0.92 [0.65-0.99] n=12" in rows["w"]


def test_the_cli_reads_the_store_without_a_reward_service(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'prefs.db'}"
    store = PreferenceStore(url)
    for p in [*crowd(), pref(9, 3, "w", [[1], [0]], candidates=("E", "F"), project_id=2)]:
        store.upsert(p)
    assert main(["prefs", "quality", "--store", url, "--project", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["project_id"] == 1 and report["annotations"] == 8 and report["reward_agreement"] is None
    assert main(["prefs", "quality", "--store", url]) == 0
    assert "9 annotations by 4 annotators on 3 tasks" in capsys.readouterr().out


# -- against a real reward service ---------------------------------------------------------------


def store_scenario(store: PreferenceStore, model_order) -> None:
    """Six tasks, four annotators: two careful ones, one who submits the pre-ranking untouched on half the
    tasks, one who reverses the others and puts whatever is shown first on top. `model_order(prompt,
    candidates)` is the reward model's order, which a pre-ranking shows."""
    rng = random.Random(7)
    annotation_id = 0
    for task_id in range(1, 7):
        prompt = f"Write a one-line reply to customer message {task_id}."
        candidates = tuple(f"Reply {c} to message {task_id}." for c in "ABCD")
        gold = [0, 1, 2, 3]  # A best
        predicted = model_order(prompt, candidates)
        for annotator in ("ana", "ben", "cat", "dan"):
            annotation_id += 1
            shown = tuple(rng.sample(range(4), 4))
            context = {"shown_order": shown, "lead_time_s": round(rng.uniform(20, 90), 1)}
            order = list(gold)
            if annotator in ("ana", "ben") and rng.random() < 0.4:  # careful, but not perfect
                at = rng.randrange(3)
                order[at], order[at + 1] = order[at + 1], order[at]
            if annotator == "cat" and task_id % 2:  # opens the pre-ranking and clicks Submit
                order, shown = list(predicted), tuple(predicted)
                context |= {"shown_order": shown, "from_prediction": True, "prediction_distance": 0.0}
                context |= {"prediction_version": "reward-0001", "lead_time_s": round(rng.uniform(3, 8), 1)}
            if annotator == "dan":  # reversed, and the first shown on top
                order = [shown[0], *[i for i in reversed(gold) if i != shown[0]]]
                context["lead_time_s"] = round(rng.uniform(5, 15), 1)
            store.upsert(pref(annotation_id, task_id, annotator, [[i] for i in order], candidates, **context))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_prefs_quality_against_a_real_reward_service(tiny_model_dir, tmp_path):
    from services.reward.client import RewardClient
    from services.tools.local_stack import LocalStack

    url = f"sqlite:///{tmp_path / 'prefs.db'}"
    store = PreferenceStore(url)
    with LocalStack(tmp_path, progress=lambda _: None) as stack:
        reward = stack.reward(str(tiny_model_dir))
        with RewardClient(reward.target, timeout_s=60) as client:
            store_scenario(store, lambda prompt, candidates: client.rank(prompt, candidates).order)
            prefs = store.all(1)
            expected_scores = {t: client.rank(p, c).scores for t, (p, c) in tasks_to_score(prefs).items()}
            version = client.info().active_version
        as_json = run_cli("prefs", "quality", "--store", url, "--project", "1", "--reward-url", reward.target, "--json")
        as_table = run_cli("prefs", "quality", "--store", url, "--project", "1", "--reward-url", reward.target)
    assert as_json.returncode == 0, as_json.stderr
    assert as_table.returncode == 0, as_table.stderr
    print(as_table.stdout)  # what docs/annotator-quality.md shows

    report = json.loads(as_json.stdout)
    # The CLI's Rank calls give the same figures as the report on the scores fetched here.
    expected = json.loads(json.dumps(annotator_quality(prefs, expected_scores, version).to_dict()))
    for got, want in zip(report["per_annotator"], expected["per_annotator"], strict=True):
        assert got["reward_agreement"]["hits"] == want["reward_agreement"]["hits"]
        assert got["reward_agreement"]["n"] == want["reward_agreement"]["n"] > 0
    assert report["reward_version"] == version and report["annotators"] == 4
    annotators = {a["annotator"]: a for a in report["per_annotator"]}
    # cat's untouched pre-rankings are the model's own order: agreement with it is perfect there.
    assert annotators["cat"]["predictions"]["untouched"] == 3
    majority = {name: a["majority_agreement"]["share"] for name, a in annotators.items()}
    assert majority["dan"] < 0.5 and majority["dan"] < min(majority["ana"], majority["ben"])
    assert annotators["dan"]["position_bias"]["first_in_best"]["share"] == 1.0
    lines = as_table.stdout.splitlines()
    assert [line.split()[0] for line in lines[4:]] == ["ana", "ben", "cat", "dan", "(all)"]

    refused = run_cli("prefs", "quality", "--store", url, "--reward-url", "127.0.0.1:1", "--timeout-s", "2")
    assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr and "Traceback" not in refused.stderr
