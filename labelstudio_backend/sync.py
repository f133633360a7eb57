"""`rlhf-loop sync`: make the preference store equal to Label Studio's export (missed webhooks lose nothing)."""

from __future__ import annotations

import logging

from labelstudio_backend.annotation_context import PredictionLookup, labelstudio_predictions
from labelstudio_backend.preference_store import PreferenceStore, StoredPreference, SyncReport
from labelstudio_backend.webhooks import is_cancelled, preference_from_annotation
from services.core.errors import InvalidRequestError

log = logging.getLogger(__name__)


def exported_preferences(
    tasks: list[dict], project_id: int, label_config: str, predictions: PredictionLookup | None = None
) -> list[StoredPreference]:
    """Every submitted, valid annotation of an export; the rest are logged and skipped.

    An export names each task's predictions by id only: `predictions` reads
    the one an annotation started from.
    """
    preferences = []
    for task in tasks:
        for annotation in task.get("annotations") or []:
            if is_cancelled(annotation):
                continue
            try:
                preferences.append(preference_from_annotation(annotation, task, project_id, label_config, predictions))
            except InvalidRequestError as error:
                log.warning("skipping annotation", extra={"annotation": annotation.get("id"), "reason": str(error)})
    return preferences


def sync_project(client, store: PreferenceStore, project_id: int) -> SyncReport:
    project = client.projects.get(id=project_id)
    tasks = client.projects.exports.as_json(project_id)
    preferences = exported_preferences(tasks, project_id, project.label_config, labelstudio_predictions(client))
    return store.replace_project(project_id, preferences)
