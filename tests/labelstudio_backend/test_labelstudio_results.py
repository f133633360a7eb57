import pytest

from labelstudio_backend.preference_store import PreferenceStore, StoredPreference, pairwise_agreement
from labelstudio_backend.results import ResultRejectedError, ranking_from_result
from labelstudio_backend.templates import PAIRWISE_CONFIG, TEMPLATES, candidate_data, ranking_result, template_of
from services.controller.human_evaluation import judged_tasks
from services.core.errors import InvalidRequestError
from services.core.rankings import Ranking, rankings_to_pairs

DATA = candidate_data("Which is best?", ["A", "B", "C", "D"], TEMPLATES["ranker"], {"policy_version": "policy-0001"})
PAIR_DATA = candidate_data("Which is best?", ["A", "B"], TEMPLATES["pairwise"], {})


def ranker(value: dict) -> list[dict]:
    return [{"type": "ranker", "from_name": "rank", "to_name": "candidates", "value": {"ranker": value}}]


def parse(result, template="ranker", data=DATA):
    return ranking_from_result(result, data, TEMPLATES[template], annotator="ann", source="labelstudio:annotation:1")


def test_templates_are_recognised_from_their_label_config():
    for name, template in TEMPLATES.items():
        assert template_of(template.label_config).name == name


def test_ranker_order_becomes_strict_tiers():
    ranking = parse(ranker({"rank": ["c2", "c0", "c3", "c1"]}))
    assert ranking.candidates == ("A", "B", "C", "D")
    assert ranking.tiers == ((2,), (0,), (3,), (1,))


def test_buckets_tie_and_the_unsorted_list_is_unranked():
    ranking = parse(ranker({"best": ["c1", "c3"], "acceptable": [], "bad": ["c0"], "_": ["c2"]}), "ranker-buckets")
    assert ranking.tiers == ((1, 3), (0,))


def test_pairwise_selection():
    result = [{"type": "pairwise", "value": {"selected": "right"}}]
    assert parse(result, "pairwise", PAIR_DATA).tiers == ((1,), (0,))


def tie(choice: str) -> dict:
    """A tie as the UI submits it (read from a real annotation)."""
    return {"type": "choices", "from_name": "tie", "to_name": "answer1", "value": {"choices": [choice]}}


@pytest.mark.parametrize("choice", ["Equally good", "Both bad"])
def test_a_pairwise_tie_is_one_tier_of_both_and_gives_no_pair(choice):
    ranking = parse([tie(choice)], "pairwise", PAIR_DATA)
    assert ranking.tiers == ((0, 1),)
    assert rankings_to_pairs(ranking) == []


def test_a_pairwise_tie_agrees_with_no_one():
    side = StoredPreference(1, 1, 7, "x", parse([pairwise_side("left")], "pairwise", PAIR_DATA))
    tied = StoredPreference(2, 1, 7, "y", parse([tie("Equally good")], "pairwise", PAIR_DATA))
    stats = pairwise_agreement([side, tied])
    assert (stats["compared_pairs"], stats["agreement"]) == (0, None)


def pairwise_side(side: str) -> dict:
    """A side as the UI submits it: to_name is the Pairwise tag's own name there."""
    return {"type": "pairwise", "from_name": "comparison", "to_name": "comparison", "value": {"selected": side}}


@pytest.mark.parametrize(
    "result, reason",
    [
        ([pairwise_side("left"), tie("Both bad")], "a side or a tie, not both"),
        ([tie("Maybe")], "Equally good, Both bad"),
        ([{**tie("Both bad"), "value": {"choices": ["Both bad", "Equally good"]}}], "a tie must be one of"),
        ([{**tie("Both bad"), "value": "Both bad"}], "must be an object"),
        ([], "found 0"),
        ([pairwise_side("left"), pairwise_side("right")], "found 2"),
    ],
)
def test_pairwise_results_that_are_no_single_answer_are_rejected_with_the_reason(result, reason):
    with pytest.raises(ResultRejectedError, match=reason):
        parse(result, "pairwise", PAIR_DATA)


def test_a_pairwise_task_needs_exactly_two_candidates():
    with pytest.raises(ResultRejectedError, match="2 candidates"):
        parse([tie("Both bad")], "pairwise", DATA)


@pytest.mark.parametrize(
    "template, order, tiers",
    [
        ("ranker", [2, 0, 3, 1], ((2,), (0,), (3,), (1,))),
        ("ranker-buckets", [2, 0, 3, 1], ((2,), (0,), (3, 1))),  # 4 into 3 buckets: the last takes the rest
        ("pairwise", [1, 0], ((1,), (0,))),
    ],
)
def test_simulated_annotators_results_still_parse(template, order, tiers):
    data = PAIR_DATA if TEMPLATES[template].pairwise else DATA
    ids = [c["id"] for c in data["candidates"]]
    assert parse(ranking_result(TEMPLATES[template], ids, order), template, data).tiers == tiers


def test_the_people_judge_counts_a_tie_as_half_a_win():
    task = {**candidate_data("p", ["new", "old"], TEMPLATES["pairwise"], {}), "evaluation": {"new_index": 0}}
    annotations = [{"id": 1, "completed_by": 1, "result": [tie("Both bad")]},
                   {"id": 2, "completed_by": 2, "result": [pairwise_side("left")]}]  # fmt: skip
    (judged,) = judged_tasks([{"id": 9, "data": task, "annotations": annotations}], 1, PAIRWISE_CONFIG)
    assert judged.votes == (0.5, 1.0) and judged.people == 0.75


@pytest.mark.parametrize(
    "result, template",
    [
        (ranker({"rank": ["c0", "c1", "c2", "zz"]}), "ranker"),  # unknown id
        (ranker({"rank": ["c0", "c0", "c1", "c2"]}), "ranker"),  # duplicate
        (ranker({"rank": ["c0", "c1"]}), "ranker"),  # not all ranked
        (ranker({"rank": "c0"}), "ranker"),
        (ranker({"best": ["c0"], "awesome": ["c1"]}), "ranker-buckets"),  # unknown bucket
        (ranker({"best": ["c0"], "_": ["c0"]}), "ranker-buckets"),
        ([{"type": "pairwise", "value": {"selected": "middle"}}], "pairwise"),
        ([], "ranker"),
        ("not a list", "ranker"),
        ([{"type": "choices", "value": {}}], "ranker"),
    ],
)
def test_results_that_do_not_fit_the_task_are_rejected(result, template):
    data = PAIR_DATA if template == "pairwise" else DATA
    with pytest.raises(ResultRejectedError):
        parse(result, template, data)


def test_a_task_without_candidates_is_rejected():
    with pytest.raises(ResultRejectedError, match="fewer than 2"):
        parse(ranker({"rank": ["c0"]}), data={"prompt": "p"})


def preference(annotation_id: int, order: list[str], annotator: str = "ann", task_id: int = 7) -> StoredPreference:
    return StoredPreference(annotation_id, 1, task_id, annotator, parse(ranker({"rank": order})), "policy-0001")


def test_store_is_idempotent_by_annotation_id(database_url):
    store = PreferenceStore(database_url)
    first = preference(1, ["c0", "c1", "c2", "c3"])
    assert store.upsert(first) is True
    assert store.upsert(first) is False  # duplicate delivery
    assert store.upsert(preference(1, ["c3", "c2", "c1", "c0"])) is True  # update replaces
    assert [p.ranking.tiers for p in store.all()] == [((3,), (2,), (1,), (0,))]
    assert store.delete(1) and not store.delete(1)
    assert store.all() == []


def test_sync_adds_updates_and_removes(database_url):
    store = PreferenceStore(database_url)
    store.upsert(preference(1, ["c0", "c1", "c2", "c3"]))
    store.upsert(preference(2, ["c0", "c1", "c2", "c3"]))
    report = store.replace_project(
        1, [preference(2, ["c1", "c0", "c2", "c3"]), preference(3, ["c0", "c1", "c2", "c3"])]
    )
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    assert [p.annotation_id for p in store.all()] == [2, 3]
    assert store.replace_project(1, store.all()) == type(report)(0, 0, 0)


def test_agreement_counts_shared_pairs_and_merges_by_majority():
    prefs = [
        preference(1, ["c0", "c1", "c2", "c3"], "x"),
        preference(2, ["c0", "c1", "c2", "c3"], "y"),
        preference(3, ["c1", "c0", "c2", "c3"], "z"),
    ]
    stats = pairwise_agreement(prefs)
    assert (stats["annotations"], stats["annotators"], stats["tasks"], stats["pairs"]) == (3, 3, 1, 6)
    # 6 pairs x 3 annotator pairs = 18 comparisons; only (A,B) splits: z disagrees with x and y.
    assert stats["compared_pairs"] == 18 and stats["agreement"] == pytest.approx(16 / 18)
    merged = {(m["chosen"], m["rejected"]) for m in stats["merged"]}
    assert ("A", "B") in merged and len(merged) == 6


def test_two_candidates_with_the_same_text_give_no_pair_to_agree_on():
    twins = Ranking("p", ("same", "same", "other"), ((0,), (1,), (2,)), annotator="x")
    stats = pairwise_agreement([StoredPreference(1, 1, 1, "x", twins), StoredPreference(2, 1, 1, "y", twins)])
    # "same" over "other" (twice in one ranking, one vote each annotator); never "same" over "same".
    assert stats["pairs"] == 1 and stats["compared_pairs"] == 1
    assert [(m["chosen"], m["rejected"]) for m in stats["merged"]] == [("same", "other")]


def test_labelstudio_up_refuses_a_busy_port(tmp_path):
    import socket

    from labelstudio_backend.labelstudio_server import up
    from services.core.errors import PreconditionError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PreconditionError, match="busy"):
            up(port=taken.getsockname()[1], data_dir=tmp_path)


def test_noise_temperature_is_calibrated_to_the_target_agreement():
    import random

    from services.sim.simulated_annotators import calibrate_temperature, expected_agreement, noisy_order

    rng = random.Random(0)
    groups = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(200)]
    temperature = calibrate_temperature(groups, 0.73)
    assert expected_agreement(groups, temperature) == pytest.approx(0.73, abs=1e-3)
    # Candidates that are more alike need less noise for the same agreement.
    assert calibrate_temperature([[g / 3 for g in group] for group in groups], 0.73) < temperature
    # And the sampler really agrees that often: two annotators over the same tasks.
    agree = total = 0
    for group in groups:
        a, b = noisy_order(group, temperature, rng), noisy_order(group, temperature, rng)
        pos_a, pos_b = {c: i for i, c in enumerate(a)}, {c: i for i, c in enumerate(b)}
        for i in range(4):
            for j in range(i + 1, 4):
                total += 1
                agree += (pos_a[i] < pos_a[j]) == (pos_b[i] < pos_b[j])
    assert agree / total == pytest.approx(0.73, abs=0.04)


def test_a_skipped_annotation_is_no_ranking_and_replaces_none(database_url):
    from labelstudio_backend.webhooks import handle_annotation_event

    store = PreferenceStore(database_url)
    task = {"id": 7, "data": DATA}
    project = {"id": 1, "label_config": TEMPLATES["ranker"].label_config}
    created = {"id": 5, "result": ranker({"rank": ["c0", "c1", "c2", "c3"]}), "completed_by": 2}
    event = {"action": "ANNOTATION_CREATED", "annotation": created, "task": task, "project": project}
    assert handle_annotation_event(store, event, project["label_config"]).status == "stored"
    skipped = {**created, "result": [], "was_cancelled": True}
    update = {**event, "action": "ANNOTATION_UPDATED", "annotation": skipped}
    assert handle_annotation_event(store, update, project["label_config"]).status == "deleted"
    assert handle_annotation_event(store, update, project["label_config"]).status == "ignored"
    assert store.all() == []


async def test_predictions_take_the_reward_services_ranking_as_it_is(tmp_path):
    from labelstudio_backend.app import Backend, BackendConfig
    from services.reward.ranking import RankResult

    class Reward:
        async def rank(self, prompt, candidates):
            self.asked = (prompt, candidates)
            # Not the order the scores alone would give: the backend must not recompute it.
            return RankResult([0.0, 0.0, 0.0, 0.0], [2, 0, 3, 1], [[0.5] * 4, [0.5] * 4, [0.9] * 4, [0.7] * 4], "r7")

    backend = Backend(BackendConfig(store_url=f"sqlite:///{tmp_path / 'prefs.db'}"))
    backend.reward = reward = Reward()
    predicted = await backend._predict_one({"data": DATA}, TEMPLATES["ranker"])
    assert reward.asked == ("Which is best?", ["A", "B", "C", "D"])
    assert predicted["result"][0]["value"]["ranker"] == {"rank": ["c2", "c0", "c3", "c1"]}
    assert predicted["score"] == pytest.approx((0.9 + 0.5 + 0.7) / 3)  # p[2][0], p[0][3], p[3][1]
    assert predicted["model_version"] == "r7"
    assert await backend._predict_one({"data": {"prompt": "no candidates yet"}}, TEMPLATES["ranker"]) == []


def test_plain_text_instructions_are_escaped_with_their_line_breaks_and_paragraphs(tmp_path):
    from labelstudio_backend.instructions import DIALOG_STYLE, read_instructions, text_to_html

    html = text_to_html('Prefer the <correct> "answer" & more.\nThen the shorter.\n\n\nSkip the rest.\n')
    assert html == DIALOG_STYLE + (
        '<p>Prefer the &lt;correct&gt; "answer" &amp; more.<br>\nThen the shorter.</p>\n<p>Skip the rest.</p>'
    )
    (tmp_path / "notes.txt").write_text("a <b>\n")
    (tmp_path / "notes.HTML").write_text("<p>a <b>bold</b></p>\n")
    (tmp_path / "empty.txt").write_text(" \n")
    assert read_instructions(tmp_path / "notes.txt") == DIALOG_STYLE + "<p>a &lt;b&gt;</p>"
    assert read_instructions(tmp_path / "notes.HTML") == "<p>a <b>bold</b></p>"
    for refused in ("empty.txt", "missing.txt"):
        with pytest.raises(InvalidRequestError):
            read_instructions(tmp_path / refused)


@pytest.mark.parametrize("share", [-0.1, 1.01, float("nan"), True, "0.5"])
def test_project_init_refuses_a_pre_ranked_share_outside_0_to_1_before_calling_label_studio(share):
    from labelstudio_backend.project_setup import init_project

    with pytest.raises(InvalidRequestError, match="pre-ranked share"):
        init_project(None, template="ranker", title="t", backend_url="http://127.0.0.1:1", pre_rank=share)
