"""The model names the HTTP APIs answer to, and `GET /v1/models` (the OpenAI/vLLM list) that shows them.

Like `vllm serve MODEL`, the service goes by its `--model` value, which always
means the active version; every registered version is listed too, so a
request may name one to score with it, as gRPC Score's `version` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from services.core.errors import InvalidRequestError
from services.models.registry import InvalidVersionNameError, VersionInfo, VersionNotFoundError
from services.reward.http_json import ModelNotFoundError, json_route, vllm_error
from services.reward.scorer import RewardScorer
from services.reward.service import RewardService

OWNER = "rlhf-loop"


def served_name(service: RewardService) -> str:
    return str(service.config.base_model)


def model_name(service: RewardService, body: dict[str, Any]) -> str:
    """The name a reply carries: the request's `model`, or the served name when it sent none (as vLLM)."""
    return body.get("model") or served_name(service)


async def scorer_for(service: RewardService, model: Any) -> RewardScorer:
    """The scorer a request's `model` names: none or the served name is the active version."""
    if model is None or model == served_name(service):
        return await service.scorer_of()
    if not isinstance(model, str):
        raise InvalidRequestError('"model" must be a string')
    try:
        return await service.scorer_of(model)
    except (VersionNotFoundError, InvalidVersionNameError):
        raise ModelNotFoundError(f"The model `{model}` does not exist.") from None


def _card(model_id: str, version: VersionInfo, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
    created = version.metadata.get("created_at")
    return {
        "id": model_id,
        "object": "model",
        "created": int(datetime.fromisoformat(created).timestamp()) if created else 0,
        "owned_by": OWNER,
        "root": version.id,
        "parent": parent,
        "max_model_len": max_model_len,
    }


def models_routes(service: RewardService, token: str | None) -> list[web.RouteDef]:
    async def list_models(_: None) -> dict[str, Any]:
        versions, active = service.versions()
        name = served_name(service)
        by_id = {v.id: v for v in versions}
        # First the served name (clients such as vLLM's examples take data[0]), then each version under it.
        cards = [_card(name, by_id[active], None, service.scorer.max_length)]
        cards += [_card(v.id, v, name, service.scorer.max_length if v.id == active else None) for v in versions]
        return {"object": "list", "data": cards}

    return [json_route("GET", "/v1/models", list_models, vllm_error, token)]
