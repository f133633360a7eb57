"""Label Studio webhook events -> preference-store changes (idempotent by annotation id)."""

from __future__ import annotations

from dataclasses import dataclass

from labelstudio_backend.annotation_context import PredictionLookup, annotation_context
from labelstudio_backend.preference_store import PreferenceStore, StoredPreference
from labelstudio_backend.results import ranking_from_result
from labelstudio_backend.templates import template_of
from services.core.errors import InvalidRequestError

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
# Optional shared secret: Label Studio sends it with every webhook (project init sets the header),
# the backend refuses webhooks without it.
WEBHOOK_SECRET_HEADER = "X-Rlhf-Loop-Webhook-Secret"


@dataclass(frozen=True)
class Outcome:
    status: str  # stored | unchanged | deleted | ignored | scheduled | training_requested
    detail: str = ""


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{what} must be an integer id")
    return value


def _annotator(annotation: dict) -> str:
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    return str(completed_by) if completed_by is not None else "unknown"


def preference_from_annotation(
    annotation: object, task: object, project_id: int, label_config: str, predictions: PredictionLookup | None = None
) -> StoredPreference:
    """An annotation (as in webhooks and exports) -> StoredPreference; raises on anything that does not fit.

    `predictions` finds the pre-ranking an annotation started from when the
    task does not carry it (webhooks send the task without its predictions).
    """
    if not isinstance(annotation, dict) or not isinstance(task, dict):
        raise InvalidRequestError("annotation and task must be objects")
    annotation_id = _int(annotation.get("id"), "annotation.id")
    task_id = _int(task.get("id"), "task.id")
    data = task.get("data")
    if not isinstance(data, dict):
        raise InvalidRequestError("task.data must be an object")
    annotator = _annotator(annotation)
    template = template_of(label_config)
    ranking = ranking_from_result(
        annotation.get("result"), data, template, annotator, f"labelstudio:annotation:{annotation_id}"
    )
    policy_version = (
        (data.get("generation") or {}).get("policy_version", "") if isinstance(data.get("generation"), dict) else ""
    )
    context = annotation_context(annotation, task, ranking, template, predictions)
    return StoredPreference(
        annotation_id, project_id, task_id, annotator, ranking, str(policy_version), **vars(context)
    )


def is_cancelled(annotation: dict) -> bool:
    return bool(annotation.get("was_cancelled"))


def handle_annotation_event(
    store: PreferenceStore, payload: dict, label_config: str, predictions: PredictionLookup | None = None
) -> Outcome:
    annotation, task, project = payload.get("annotation"), payload.get("task"), payload.get("project")
    if not isinstance(annotation, dict) or not isinstance(project, dict):
        raise InvalidRequestError("annotation events need 'annotation' and 'project' objects")
    if is_cancelled(annotation):
        # A skipped annotation is no ranking; if it replaced one, the old ranking goes.
        removed = store.delete(_int(annotation.get("id"), "annotation.id"))
        return Outcome("deleted" if removed else "ignored", "cancelled/skipped annotation")
    preference = preference_from_annotation(
        annotation, task, _int(project.get("id"), "project.id"), label_config, predictions
    )
    return Outcome("stored" if store.upsert(preference) else "unchanged", f"annotation {preference.annotation_id}")


def handle_annotations_deleted(store: PreferenceStore, payload: dict) -> Outcome:
    annotations = payload.get("annotations")
    if not isinstance(annotations, list):
        raise InvalidRequestError("ANNOTATIONS_DELETED needs an 'annotations' list")
    ids = [_int(a.get("id") if isinstance(a, dict) else None, "annotations[].id") for a in annotations]
    removed = sum(store.delete(i) for i in ids)
    return Outcome("deleted" if removed else "unchanged", f"{removed} of {len(ids)} removed")
