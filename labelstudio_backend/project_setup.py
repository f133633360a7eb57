"""`rlhf-loop project init`: a Label Studio project wired to the backend, idempotently."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from labelstudio_backend.instructions import DEFAULT_INSTRUCTIONS
from labelstudio_backend.templates import TEMPLATES
from labelstudio_backend.webhooks import WEBHOOK_SECRET_HEADER
from services.core.errors import InvalidRequestError

# How `created` names a project setting it changed.
_SETTING_NAMES = {
    "expert_instruction": "instructions",
    "show_instruction": "instructions",
    "show_collab_predictions": "pre-rank",
    "label_config": "labeling config",
}
WEBHOOK_ACTIONS = ["TASKS_CREATED", "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]


@dataclass(frozen=True)
class ProjectSetup:
    project_id: int
    ml_backend_id: int
    webhook_id: int
    created: tuple[str, ...]  # what this call created (empty when everything existed)


def labelstudio_client(url: str, token: str):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=token)


def sdk_field(item, name: str):
    """A field of an SDK object, or of the plain dict the SDK returns for nested items (annotations in tasks)."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def find_or_create_project(client, title: str, label_config: str, **settings: Any) -> tuple[Any, bool]:
    """(project, created): the project with this title, created with this labeling config and settings when there
    is none."""
    project = next((p for p in client.projects.list() if p.title == title), None)
    if project is not None:
        return project, False
    return client.projects.create(title=title, label_config=label_config, **settings), True


def _project_settings(instructions: str, pre_rank: float) -> dict[str, Any]:
    """The project fields `project init` owns: the instructions shown before the first task, and whether Label
    Studio asks the backend for pre-rankings at all (it fetches and shows predictions only with this flag on;
    its default, on, would open every task in the reward model's order)."""
    return {"expert_instruction": instructions, "show_instruction": True, "show_collab_predictions": pre_rank > 0}


def init_project(
    client,
    *,
    template: str,
    title: str,
    backend_url: str,
    basic_auth: tuple[str, str] | None = None,
    webhook_secret: str | None = None,
    candidates: int = 4,
    instructions: str = DEFAULT_INSTRUCTIONS,
    pre_rank: float = 0.0,
) -> ProjectSetup:
    """Find or create the project, its ML backend connection and its annotation webhook.

    `instructions` (HTML) are shown before the first task; `pre_rank` is the share of tasks that open
    pre-ranked by the reward model (0: none, the annotator's own order; see the anchoring note in
    docs/annotating.md). On an existing project, settings that differ (and a labeling config of an older
    release) are updated and named in `created`.
    """
    if candidates < 2:
        raise InvalidRequestError(f"a ranking needs at least 2 candidates, got {candidates}")
    if template not in TEMPLATES:
        raise InvalidRequestError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if isinstance(pre_rank, bool) or not isinstance(pre_rank, int | float) or not 0 <= pre_rank <= 1:
        raise InvalidRequestError(f"the pre-ranked share must be a number in [0, 1], got {pre_rank!r}")
    if not instructions.strip():
        raise InvalidRequestError("the project instructions are empty")
    settings = _project_settings(instructions, pre_rank)
    project, project_created = find_or_create_project(client, title, TEMPLATES[template].label_config, **settings)
    created = ["project"] if project_created else []
    # An existing project also gets this release's labeling config: one made before kept showing the ids.
    wanted = {**settings, "label_config": TEMPLATES[template].label_config}
    differing = {k: v for k, v in wanted.items() if getattr(project, k, None) != v}
    if differing and not project_created:
        # Label Studio cleans the instructions' HTML (drops style attributes...): what it stores can differ
        # from what was sent, so a change is what the update changed, and a second run reports nothing.
        updated = client.projects.update(id=project.id, **differing)
        created += sorted({_SETTING_NAMES[k] for k in differing if getattr(updated, k) != getattr(project, k)})
        project = updated
    backend_url = backend_url.rstrip("/")
    ml = next((m for m in client.ml.list(project=project.id) if m.url.rstrip("/") == backend_url), None)
    extra = {"candidates": candidates, "pre_rank": float(pre_rank)}
    auth = {"auth_method": "NONE"}
    if basic_auth:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
    # Label Studio calls the backend's /health and /setup on both (the backend must be running), with what the
    # call names only: an update without url, project and auth fails with a 500 in Label Studio 1.23.
    connection = {"project": project.id, "url": backend_url, **auth}
    if ml is None:
        ml = client.ml.create(title="rlhf-loop reward model", extra_params=extra, **connection)
        created.append("ml_backend")
    else:
        current = ml.extra_params if isinstance(ml.extra_params, dict) else {}
        if {**current, **extra} != current:  # keys set by others stay
            ml = client.ml.update(id=ml.id, extra_params={**current, **extra}, **connection)
            created.append("ml_backend settings")
    webhook_url = f"{backend_url}/webhook"
    headers = {}
    if basic_auth:
        token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if webhook_secret:
        headers[WEBHOOK_SECRET_HEADER] = webhook_secret
    wanted = {"actions": WEBHOOK_ACTIONS, "headers": headers, "send_payload": True, "send_for_all_actions": False}
    # Connecting an ML backend makes Label Studio add its own webhook to <url>/webhook (all
    # actions, no auth header): take that one over rather than adding a second.
    hook = next((w for w in client.webhooks.list(project=str(project.id)) if w.url == webhook_url), None)
    if hook is None:
        hook = client.webhooks.create(url=webhook_url, project=project.id, **wanted)
        created.append("webhook")
    elif (sorted(hook.actions or []), hook.headers or {}, hook.send_for_all_actions) != (
        sorted(WEBHOOK_ACTIONS),
        headers,
        False,
    ):
        hook = client.webhooks.update(id=hook.id, url=webhook_url, **wanted)
        created.append("webhook settings")
    return ProjectSetup(project.id, ml.id, hook.id, tuple(created))


def project_candidates(client, project_id: int, default: int) -> int:
    """K for a project: what `project init --candidates` stored with its ML backend connection."""
    for ml in client.ml.list(project=project_id):
        extra = ml.extra_params if isinstance(ml.extra_params, dict) else {}
        if isinstance(extra.get("candidates"), int) and extra["candidates"] >= 2:
            return extra["candidates"]
    return default


def project_pre_rank(client, project_id: int) -> float:
    """The share of a project's tasks to pre-rank: what `project init --pre-rank` stored with its ML backend
    connection. A project made before that option pre-ranks every task if it shows predictions, none if not."""
    for ml in client.ml.list(project=project_id):
        share = ml.extra_params.get("pre_rank") if isinstance(ml.extra_params, dict) else None
        if isinstance(share, int | float) and not isinstance(share, bool) and 0 <= share <= 1:
            return float(share)
    return 1.0 if client.projects.get(id=project_id).show_collab_predictions else 0.0
