"""`rlhf-loop serve backend`: the Label Studio ML backend protocol over aiohttp.

GET /health, POST /setup, POST /predict, POST /webhook, GET /versions, GET /metrics.
Pre-annotations come from the reward service (Rank calls, merged by its
batcher); annotations go to the preference store; candidates for new tasks
come from the policy service and are written back through the Label Studio SDK.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import sqlalchemy.exc
from aiohttp import web
from label_studio_sdk.core.api_error import ApiError

from labelstudio_backend.annotation_context import PredictionLookup, labelstudio_predictions
from labelstudio_backend.candidates import fill_tasks
from labelstudio_backend.metrics import BackendMetrics
from labelstudio_backend.predictions import is_pre_ranked, prediction
from labelstudio_backend.preference_store import PreferenceStore, pairwise_agreement
from labelstudio_backend.project_setup import labelstudio_client, project_candidates, project_pre_rank
from labelstudio_backend.results import ResultRejectedError, task_candidates
from labelstudio_backend.templates import template_of
from labelstudio_backend.webhooks import (
    ANNOTATION_EVENTS,
    WEBHOOK_SECRET_HEADER,
    Outcome,
    handle_annotation_event,
    handle_annotations_deleted,
)
from services.core.errors import InvalidRequestError, ServiceError
from services.policy.client import PolicyClient
from services.policy.sampling import Sampling
from services.reward.client import AsyncRewardClient
from services.rpc.server_runtime import metrics_route

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024  # a predict batch of a few hundred long tasks; more is refused with 413
PRE_RANK_REFRESH_S = 30.0  # a changed `project init --pre-rank` takes effect this soon


@dataclass
class BackendConfig:
    store_url: str = "sqlite:///preferences.db"
    reward_target: str = "127.0.0.1:50051"
    reward_token: str | None = None
    reward_tls_ca: Path | None = None
    basic_auth: tuple[str, str] | None = None  # (user, password)
    webhook_secret: str | None = None  # required in WEBHOOK_SECRET_HEADER of /webhook when set
    candidates: int = 4
    labelstudio_url: str | None = None  # for writing candidates into tasks
    labelstudio_token: str | None = None
    policy_target: str | None = None
    max_new_tokens: int = 64
    temperature: float = 1.0


# Probes and Prometheus scrape these without Label Studio's credentials, as they scrape the gRPC
# services' metrics ports; neither shows a ranking, a prompt or a secret.
UNAUTHENTICATED = frozenset({"/health", "/metrics"})


def _basic_auth_middleware(user: str, password: str):
    expected = f"{user}:{password}".encode()

    @web.middleware
    async def check(request: web.Request, handler):
        header = request.headers.get("Authorization", "")
        try:
            given = base64.b64decode(header[6:], validate=True) if header.startswith("Basic ") else b""
        except (binascii.Error, ValueError):
            given = b""
        if request.path not in UNAUTHENTICATED and not hmac.compare_digest(given, expected):
            return web.json_response(
                {"error": "authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="rlhf-loop"'},
            )
        return await handler(request)

    return check


def _webhook_secret_middleware(secret: str):
    expected = secret.encode()

    @web.middleware
    async def check(request: web.Request, handler):
        given = request.headers.get(WEBHOOK_SECRET_HEADER, "").encode()
        if request.path == "/webhook" and not hmac.compare_digest(given, expected):
            refusal = {"error": f"webhooks need the shared secret in {WEBHOOK_SECRET_HEADER}"}
            return web.json_response(refusal, status=401)
        return await handler(request)

    return check


async def _json_object(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError as error:
        raise InvalidRequestError(f"body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("body must be a JSON object")
    return body


class Backend:
    def __init__(self, config: BackendConfig, metrics: BackendMetrics | None = None):
        self.config = config
        self.metrics = metrics or BackendMetrics()
        self.store = PreferenceStore(config.store_url)
        self.metrics.preferences_stored.set_function(self.store.count)
        self.metrics.agreement.set_function(self._agreement)
        self.reward = AsyncRewardClient(
            config.reward_target, token=config.reward_token, tls_ca=config.reward_tls_ca, timeout_s=60
        )
        self._background: set[asyncio.Task] = set()
        self._pre_rank: dict[int, tuple[float, float]] = {}  # project -> (read at, share)

    # -- routes ----------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "model_class": "rlhf-loop"})

    async def setup(self, request: web.Request) -> web.Response:
        await _json_object(request)
        info = await self.reward.info(timeout_s=10)
        return web.json_response({"model_version": info.active_version})

    async def versions(self, request: web.Request) -> web.Response:
        reply = await self.reward.list_versions(timeout_s=10)
        return web.json_response({"versions": [v.id for v in reply.versions], "active": reply.active})

    async def predict(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await _json_object(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise InvalidRequestError("predict needs a 'tasks' list")
        template = template_of(str(body.get("label_config") or ""))
        project_id = _project_id(body.get("project"))
        share = await asyncio.to_thread(self._pre_rank_share, project_id)
        # One Rank call per task, all at once: the reward service's batcher merges them.
        results = await asyncio.gather(
            *(
                self._predict_one(task, template)
                if is_pre_ranked(project_id, task.get("id") if isinstance(task, dict) else None, share)
                else _no_prediction()
                for task in tasks
            )
        )
        self.metrics.predictions.inc(sum(1 for r in results if r))
        self.metrics.predict_latency.observe(time.perf_counter() - started)
        return web.json_response({"results": results})

    async def _predict_one(self, task: object, template) -> dict | list:
        """The task's prediction, or an empty list (Label Studio's "no prediction for this task")."""
        data = task.get("data") if isinstance(task, dict) else None
        try:
            ids, bodies = task_candidates(data)
            prompt = data.get("prompt", "")
            ranked = await self.reward.rank(prompt, bodies)
        except ResultRejectedError:
            # No candidates yet: no prediction at all. An empty one would be stored, and Label Studio
            # never asks again for a task that has a prediction, so the real one would never come.
            return []
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise  # the reward service is down or overloaded: the whole request fails (503)
            log.warning("task not pre-ranked", extra={"reason": error.details()})
            return []  # e.g. a candidate over the length limit
        return prediction(template, ids, ranked)

    @functools.cached_property
    def _labelstudio(self):
        """One Label Studio SDK client for the backend's reads and writes (None without its address)."""
        c = self.config
        return (
            labelstudio_client(c.labelstudio_url, c.labelstudio_token)
            if c.labelstudio_url and c.labelstudio_token
            else None
        )

    def _predictions(self) -> PredictionLookup | None:
        """Where the pre-ranking an annotation started from is read (None without Label Studio's address)."""
        return labelstudio_predictions(self._labelstudio) if self._labelstudio is not None else None

    def _pre_rank_share(self, project_id: int | None) -> float:
        """The share of the project's tasks to pre-rank (`project init --pre-rank`), read at most every 30 s.

        Without Label Studio's address the backend cannot read it and pre-ranks
        every task it is asked about: the project's "show predictions" setting,
        which `project init` sets with the share, then decides what people see.
        """
        if project_id is None or self._labelstudio is None:
            return 1.0
        cached = self._pre_rank.get(project_id)
        if cached is None or time.monotonic() - cached[0] > PRE_RANK_REFRESH_S:
            try:
                share = project_pre_rank(self._labelstudio, project_id)
            except (ApiError, httpx.HTTPError) as error:  # as without the address: "show predictions" decides
                log.warning("pre-rank share not readable", extra={"project": project_id, "error": repr(error)})
                return 1.0
            cached = (time.monotonic(), share)
            self._pre_rank[project_id] = cached
        return cached[1]

    async def webhook(self, request: web.Request) -> web.Response:
        payload = await _json_object(request)
        action = payload.get("action")
        if not isinstance(action, str):
            raise InvalidRequestError("webhook payload needs an 'action' string")
        if action == "TASKS_CREATED":
            outcome = self._schedule_candidates(payload)
            self.metrics.webhooks.labels(action, outcome.status).inc()
            return web.json_response({"status": outcome.status, "detail": outcome.detail})
        try:
            outcome = await asyncio.to_thread(self._handle, action, payload)
        except ResultRejectedError as error:
            self.metrics.rejected_results.inc()
            self.metrics.webhooks.labels(action, "rejected").inc()
            log.warning("annotation result rejected", extra={"action": action, "reason": str(error)})
            return web.json_response({"error": str(error)}, status=422)
        except InvalidRequestError:
            self.metrics.webhooks.labels(action, "invalid").inc()
            raise
        self.metrics.webhooks.labels(action, outcome.status).inc()
        return web.json_response({"status": outcome.status, "detail": outcome.detail})

    def _handle(self, action: str, payload: dict) -> Outcome:
        project = payload.get("project")
        label_config = str(project.get("label_config", "")) if isinstance(project, dict) else ""
        if action in ANNOTATION_EVENTS:
            return handle_annotation_event(self.store, payload, label_config, self._predictions())
        if action == "ANNOTATIONS_DELETED":
            return handle_annotations_deleted(self.store, payload)
        if action == "START_TRAINING":
            project_id = project.get("id") if isinstance(project, dict) else project
            request_id = self.store.request_training(int(project_id) if str(project_id).isdigit() else 0)
            return Outcome("training_requested", f"request {request_id}; the controller picks it up")
        return Outcome("ignored", f"no handling for {action}")

    def _schedule_candidates(self, payload: dict) -> Outcome:
        """Generate candidates for the new tasks in the background: the webhook answers at once."""
        tasks, project = payload.get("tasks"), payload.get("project")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), int) for t in tasks):
            raise InvalidRequestError("TASKS_CREATED needs a 'tasks' list of objects with integer ids")
        c = self.config
        if not c.policy_target or self._labelstudio is None:
            return Outcome("ignored", "no policy service or Label Studio configured for candidates")
        template = template_of(str(project.get("label_config", "")) if isinstance(project, dict) else "")
        sampling = Sampling(temperature=c.temperature, max_new_tokens=c.max_new_tokens)

        project_id = project.get("id") if isinstance(project, dict) else None

        def fill() -> int:
            with PolicyClient(c.policy_target, timeout_s=600) as policy:
                k = project_candidates(self._labelstudio, project_id, c.candidates) if project_id else c.candidates
                return fill_tasks(self._labelstudio, policy, [t["id"] for t in tasks], k, template, sampling)

        job = asyncio.ensure_future(asyncio.to_thread(fill))
        self._background.add(job)
        job.add_done_callback(self._candidates_done)
        return Outcome("scheduled", f"candidates for {len(tasks)} task(s)")

    def _candidates_done(self, job: asyncio.Future) -> None:
        self._background.discard(job)
        if job.cancelled():
            return
        if job.exception() is not None:
            log.error("candidate generation failed", extra={"error": repr(job.exception())})
            return
        self.metrics.candidates_generated.inc(job.result())
        log.info("candidates written", extra={"tasks": job.result()})

    def _agreement(self) -> float:
        agreement = pairwise_agreement(self.store.all())["agreement"]
        return float("nan") if agreement is None else agreement


def _project_id(value: object) -> int | None:
    """Label Studio names the project "<id>.<created_at>" in /predict."""
    head = str(value).split(".", 1)[0] if value is not None else ""
    return int(head) if head.isdigit() else None


async def _no_prediction() -> list:
    return []


@web.middleware
async def _errors_to_status(request: web.Request, handler):
    try:
        return await handler(request)
    except ServiceError as error:
        return web.json_response({"error": str(error)}, status=error.http_status)
    except grpc.aio.AioRpcError as error:
        log.warning("reward service call failed", extra={"code": error.code().name, "details": error.details()})
        return web.json_response({"error": f"reward service: {error.code().name}: {error.details()}"}, status=503)
    except sqlalchemy.exc.OperationalError as error:  # the database is down or unreachable: nothing was stored
        log.warning("preference store unavailable", extra={"error": str(error.orig)})
        return web.json_response({"error": f"preference store unavailable: {error.orig}"}, status=503)


def build_app(backend: Backend) -> web.Application:
    middlewares = [_errors_to_status]
    if backend.config.webhook_secret:
        middlewares.insert(0, _webhook_secret_middleware(backend.config.webhook_secret))
    if backend.config.basic_auth:
        middlewares.insert(0, _basic_auth_middleware(*backend.config.basic_auth))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app.add_routes(
        [
            web.get("/health", backend.health),
            web.get("/", backend.health),
            web.post("/setup", backend.setup),
            web.post("/predict", backend.predict),
            web.post("/webhook", backend.webhook),
            web.get("/versions", backend.versions),
            metrics_route(backend.metrics.registry),
        ]
    )
    return app


def main(config: BackendConfig, host: str, port: int) -> None:
    web.run_app(build_app(Backend(config)), host=host, port=port, access_log=None, print=None)
