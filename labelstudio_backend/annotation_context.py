"""How an annotator met a task: the order it was shown in, the reward model's pre-ranking if any, the time spent.

A ranking submitted from a pre-ranking may be the reward model's own order
with a click on Submit (anchoring). Label Studio links such an annotation to
the prediction it started from (`parent_prediction`); the distance between
the two orders says how much of the ranking is the annotator's own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from label_studio_sdk.core.api_error import ApiError

from labelstudio_backend.results import ranking_from_result
from labelstudio_backend.templates import Template
from services.core.errors import InvalidRequestError
from services.core.rankings import Ranking, kendall_distance

log = logging.getLogger(__name__)

# A prediction's id -> the prediction as Label Studio's API returns it ({"id", "result", "model_version"}), or None.
PredictionLookup = Callable[[int], dict | None]


def labelstudio_predictions(client) -> PredictionLookup:
    """Predictions read back through a Label Studio SDK client, each once: webhooks carry none, exports their ids."""

    @functools.cache
    def lookup(prediction_id: int) -> dict | None:
        try:
            found = client.predictions.get(id=prediction_id)
        except (ApiError, httpx.HTTPError) as error:  # the ranking is stored all the same, without the distance
            log.warning("prediction not readable", extra={"prediction": prediction_id, "error": repr(error)})
            return None
        return {"id": found.id, "result": found.result, "model_version": found.model_version}

    return lookup


@dataclass(frozen=True)
class AnnotationContext:
    shown_order: tuple[int, ...]  # candidate indices as first shown, top (or left) first
    from_prediction: bool = False
    prediction_version: str | None = None
    prediction_distance: float | None = None  # None when the prediction could not be read
    lead_time_s: float | None = None


def annotation_context(
    annotation: dict, task: dict, ranking: Ranking, template: Template, lookup: PredictionLookup | None = None
) -> AnnotationContext:
    """The context of one annotation; `task["predictions"]` (when they are whole) or `lookup` give its prediction."""
    lead_time = annotation.get("lead_time")
    lead_time_s = float(lead_time) if isinstance(lead_time, int | float) and not isinstance(lead_time, bool) else None
    data_order = tuple(range(len(ranking.candidates)))  # the List and Pairwise show the task data's order
    parent = annotation.get("parent_prediction")
    if isinstance(parent, dict):
        parent = parent.get("id")
    if isinstance(parent, bool) or not isinstance(parent, int):
        return AnnotationContext(data_order, lead_time_s=lead_time_s)
    prediction = _find_prediction(parent, task, lookup)
    if prediction is None:
        return AnnotationContext(
            data_order, True, prediction_distance=_untouched_by_origin(annotation), lead_time_s=lead_time_s
        )
    version = prediction.get("model_version")
    try:
        predicted = ranking_from_result(prediction.get("result"), task.get("data") or {}, template, "", "")
    except InvalidRequestError:  # a prediction of another shape (made by some other backend)
        return AnnotationContext(data_order, True, str(version or "") or None, None, lead_time_s)
    shown = data_order if template.pairwise else _shown(predicted.tiers, len(ranking.candidates))
    distance = kendall_distance(ranking.tiers, predicted.tiers)
    return AnnotationContext(shown, True, str(version or "") or None, distance, lead_time_s)


def _find_prediction(prediction_id: int, task: dict, lookup: PredictionLookup | None) -> dict | None:
    for prediction in task.get("predictions") or []:
        if isinstance(prediction, dict) and prediction.get("id") == prediction_id:
            return prediction
    return lookup(prediction_id) if lookup is not None else None


def _shown(tiers: tuple[tuple[int, ...], ...], k: int) -> tuple[int, ...]:
    """A pre-ranking shows its order top first; candidates it leaves unsorted follow in the data's order."""
    ranked = [i for tier in tiers for i in tier]
    return (*ranked, *(i for i in range(k) if i not in ranked))


def _untouched_by_origin(annotation: dict) -> float | None:
    """Without the prediction itself: Label Studio marks regions kept as predicted with origin "prediction"."""
    regions = [r for r in annotation.get("result") or [] if isinstance(r, dict)]
    if regions and all(r.get("origin") == "prediction" for r in regions):
        return 0.0
    return None
