"""OpenRLHF-compatible `POST /get_reward`, served through the same dynamic batcher as gRPC Score.

OpenRLHF's remote reward model sends `{"query": [prompt+response, ...],
"prompts": [...], "labels": [...]}`; the response is split off the query
when the query starts with its prompt, otherwise the query is scored whole.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.core.errors import InvalidRequestError, ServiceError
from services.reward.scorer import ScoreItem
from services.reward.service import RewardService

DEFAULT_TIMEOUT_S = 60.0


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


def openrlhf_routes(service: RewardService) -> list[web.RouteDef]:
    async def get_reward(request: web.Request) -> web.Response:
        try:
            try:
                body = await request.json()
            except ValueError as error:
                raise InvalidRequestError(f"body is not JSON: {error}") from None
            items = _items_from_openrlhf(body)
            scores, version = await service.score(items, DEFAULT_TIMEOUT_S)
        except ServiceError as error:
            return web.json_response({"error": str(error)}, status=error.http_status)
        except asyncio.CancelledError:
            raise
        return web.json_response({"rewards": scores, "scores": scores, "extra_logs": {"model_version": version}})

    return [web.post("/get_reward", get_reward)]
