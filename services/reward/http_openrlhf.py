"""OpenRLHF-compatible `POST /get_reward`, served through the same dynamic batcher as gRPC Score.

OpenRLHF's remote reward model sends `{"query": [prompt+response, ...],
"prompts": [...], "labels": [...]}`; the response is split off the query
when the query starts with its prompt, otherwise the query is scored whole.
It reads `rewards` as the rewards and `scores` as 0-1 values for dynamic
filtering, so `scores` holds the sigmoid of each reward.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.core.errors import InvalidRequestError, ServiceError
from services.reward.http_json import REQUEST_TIMEOUT_S, json_route, sigmoid
from services.reward.scorer import ScoreItem
from services.reward.service import RewardService


def openrlhf_error(error: ServiceError) -> dict[str, Any]:
    return {"error": str(error)}


def _items_from_openrlhf(body: object) -> list[ScoreItem]:
    if not isinstance(body, dict) or not isinstance(body.get("query"), list):
        raise InvalidRequestError('expected a JSON object with a "query" list of strings')
    queries = body["query"]
    prompts = body.get("prompts") or [""] * len(queries)
    if not isinstance(prompts, list) or len(prompts) != len(queries):
        raise InvalidRequestError(f'"prompts" must be a list as long as "query" ({len(queries)})')
    items = []
    for index, (query, prompt) in enumerate(zip(queries, prompts, strict=True)):
        if not isinstance(query, str) or not isinstance(prompt, str):
            raise InvalidRequestError(f"query[{index}] and prompts[{index}] must be strings")
        if prompt and query.startswith(prompt):
            items.append(ScoreItem(prompt, query[len(prompt) :]))
        else:
            items.append(ScoreItem("", query))
    return items


def openrlhf_routes(service: RewardService, token: str | None) -> list[web.RouteDef]:
    async def get_reward(body: Any) -> dict[str, Any]:
        rewards, version = await service.score(_items_from_openrlhf(body), REQUEST_TIMEOUT_S)
        return {"rewards": rewards, "scores": [sigmoid(r) for r in rewards], "extra_logs": {"model_version": version}}

    return [json_route("POST", "/get_reward", get_reward, openrlhf_error, token)]
