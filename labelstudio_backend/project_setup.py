"""`rlhf-loop project init`: a Label Studio project wired to the backend, idempotently."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from labelstudio_backend.templates import TEMPLATES
from labelstudio_backend.webhooks import WEBHOOK_SECRET_HEADER
from services.core.errors import InvalidRequestError

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


def find_or_create_project(client, title: str, label_config: str) -> tuple[Any, bool]:
    """(project, created): the project with this title, created with this labeling config when there is none."""
    project = next((p for p in client.projects.list() if p.title == title), None)
    if project is not None:
        return project, False
    return client.projects.create(title=title, label_config=label_config), True


def init_project(
    client,
    *,
    template: str,
    title: str,
    backend_url: str,
    basic_auth: tuple[str, str] | None = None,
    webhook_secret: str | None = None,
    candidates: int = 4,
) -> ProjectSetup:
    """Find or create the project, its ML backend connection and its annotation webhook."""
    if candidates < 2:
        raise InvalidRequestError(f"a ranking needs at least 2 candidates, got {candidates}")
    if template not in TEMPLATES:
        raise InvalidRequestError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    project, project_created = find_or_create_project(client, title, TEMPLATES[template].label_config)
    created = ["project"] if project_created else []
    backend_url = backend_url.rstrip("/")
    ml = next((m for m in client.ml.list(project=project.id) if m.url.rstrip("/") == backend_url), None)
    if ml is None:
        auth = {"auth_method": "NONE"}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        # Label Studio calls the backend's /health and /setup here: the backend must be running.
        extra = {"candidates": candidates}
        ml = client.ml.create(
            project=project.id, url=backend_url, title="rlhf-loop reward model", extra_params=extra, **auth
        )
        created.append("ml_backend")
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
