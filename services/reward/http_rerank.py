"""Cohere/Jina-compatible rerank -- `POST /rerank`, `/v1/rerank`, `/v2/rerank` -- through the batcher.

The query is the prompt and each document a candidate response. As vLLM does,
one handler serves all three paths and its reply is the superset Cohere's v1
and v2 SDK types, Jina's and vLLM's clients all parse: `results` sorted by
relevance (the sigmoid of the reward, in 0-1 as Cohere documents it), `meta`
as Cohere's, `model` and `usage` as vLLM's. Documents come back unless
`return_documents` is false (vLLM and Jina return them by default).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from services.core.errors import InvalidRequestError
from services.reward.http_json import (
    JsonHandler,
    json_object,
    json_route,
    optional_bool,
    sigmoid,
    use_activation,
    vllm_error,
)
from services.reward.http_models import model_name
from services.reward.http_vllm import score_members
from services.reward.scorer import ScoreItem, member_mean
from services.reward.service import RewardService


def documents_of(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """(text, returned document) per document: a string, or an object with a "text" string (Cohere v1)."""
    if isinstance(value, str):  # vLLM accepts one bare document
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequestError('"documents" must be a non-empty list')
    documents = []
    for index, document in enumerate(value):
        if isinstance(document, str):
            documents.append((document, {"text": document}))
        elif isinstance(document, dict) and isinstance(document.get("text"), str):
            documents.append((document["text"], document))  # Cohere v1 returns the other fields as given
        else:
            raise InvalidRequestError(f'documents[{index}] must be a string or an object with a "text" string')
    return documents


def top_n_of(body: dict[str, Any], documents: int) -> int:
    """How many results to return: `top_n` capped at the documents; unset or 0 means all (vLLM)."""
    top_n = body.get("top_n")
    if top_n is None:
        return documents
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
        raise InvalidRequestError('"top_n" must be a non-negative integer')
    return min(top_n, documents) if top_n else documents


def rerank_handler(service: RewardService, api_version: str) -> JsonHandler:
    async def rerank(body: Any) -> dict[str, Any]:
        body = json_object(body)
        query = body.get("query")
        if not isinstance(query, str):
            raise InvalidRequestError('"query" must be a string')
        if body.get("rank_fields") not in (None, ["text"]):
            raise InvalidRequestError('only "rank_fields": ["text"] is supported')
        documents = documents_of(body.get("documents"))
        top_n, activate = top_n_of(body, len(documents)), use_activation(body)
        return_documents = optional_bool(body, "return_documents") is not False
        members, tokens = await score_members(service, body, [ScoreItem(query, text) for text, _ in documents])
        scores = [sigmoid(member_mean(m)) if activate else member_mean(m) for m in members]
        results = []
        for i in sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]:  # stable: ties keep input order
            result = {"index": i, "relevance_score": scores[i]}
            if return_documents:
                result["document"] = documents[i][1]
            results.append(result)
        return {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": model_name(service, body),
            "results": results,
            "meta": {"api_version": {"version": api_version}, "tokens": {"input_tokens": tokens, "output_tokens": 0}},
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return rerank


def rerank_routes(service: RewardService, token: str | None) -> list[web.RouteDef]:
    return [
        json_route("POST", path, rerank_handler(service, api_version), vllm_error, token)
        for path, api_version in (("/rerank", "1"), ("/v1/rerank", "1"), ("/v2/rerank", "2"))
    ]
