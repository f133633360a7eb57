"""How an annotator met a task: shown order, the pre-ranking it started from, how far it moved, the time spent."""

import pytest

from labelstudio_backend.annotation_context import annotation_context
from labelstudio_backend.predictions import is_pre_ranked
from labelstudio_backend.templates import TEMPLATES, candidate_data, ranking_result
from services.core.rankings import Ranking

DATA = candidate_data("Prompt", ["a", "b", "c", "d"], TEMPLATES["ranker"], {})
IDS = ["c0", "c1", "c2", "c3"]


def ranking(*tiers) -> Ranking:
    return Ranking("Prompt", ("a", "b", "c", "d"), tuple(tuple(t) for t in tiers))


def prediction(order: list[int], prediction_id: int = 7, version: str = "reward-0003") -> dict:
    return {"id": prediction_id, "result": ranking_result(TEMPLATES["ranker"], IDS, order), "model_version": version}


def test_without_a_prediction_the_task_data_order_was_shown():
    context = annotation_context({"lead_time": 12.5}, {"data": DATA}, ranking([2], [0], [1], [3]), TEMPLATES["ranker"])
    assert context.shown_order == (0, 1, 2, 3) and not context.from_prediction
    assert context.prediction_distance is None and context.lead_time_s == 12.5


def test_an_untouched_pre_ranking_has_distance_zero_and_was_shown_in_its_order():
    task = {"data": DATA, "predictions": [prediction([2, 0, 3, 1])]}  # an export carries the predictions
    context = annotation_context({"parent_prediction": 7}, task, ranking([2], [0], [3], [1]), TEMPLATES["ranker"])
    assert context.from_prediction and context.prediction_version == "reward-0003"
    assert context.shown_order == (2, 0, 3, 1) and context.prediction_distance == 0.0


def test_a_reordered_pre_ranking_records_how_far_it_moved_read_through_the_lookup():
    seen = []

    def lookup(prediction_id: int) -> dict:
        seen.append(prediction_id)
        return prediction([0, 1, 2, 3], prediction_id)

    context = annotation_context({"parent_prediction": 9}, {"data": DATA}, ranking([1], [0], [2], [3]),
                                 TEMPLATES["ranker"], lookup)  # fmt: skip
    assert seen == [9] and context.prediction_distance == pytest.approx(1 / 6)


def test_an_unreadable_prediction_falls_back_on_label_studios_origin_marks():
    kept = {"parent_prediction": 5, "result": [{"type": "ranker", "origin": "prediction"}]}
    changed = {"parent_prediction": 5, "result": [{"type": "ranker", "origin": "prediction-changed"}]}
    for annotation, distance in ((kept, 0.0), (changed, None)):
        context = annotation_context(annotation, {"data": DATA}, ranking([0], [1], [2], [3]), TEMPLATES["ranker"])
        assert context.from_prediction and context.prediction_distance == distance


def test_a_pre_ranked_share_of_tasks_is_chosen_by_id_and_stable():
    chosen = [t for t in range(2000) if is_pre_ranked(4, t, 0.3)]
    assert 0.26 * 2000 < len(chosen) < 0.34 * 2000
    assert chosen == [t for t in range(2000) if is_pre_ranked(4, t, 0.3)]
    assert all(is_pre_ranked(4, t, 1.0) for t in range(50)) and not any(is_pre_ranked(4, t, 0.0) for t in range(50))
    assert not is_pre_ranked(4, None, 0.5)


def test_a_pre_rank_share_label_studio_cannot_give_falls_back_on_its_show_predictions_setting(tmp_path):
    from labelstudio_backend.app import Backend, BackendConfig
    from services.tools.service_process import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the read fails, /predict must not
    config = BackendConfig(store_url=f"sqlite:///{tmp_path / 'p.db'}", labelstudio_url=closed, labelstudio_token="t")
    assert Backend(config)._pre_rank_share(3) == 1.0
