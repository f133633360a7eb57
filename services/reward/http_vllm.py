"""vLLM's pooling APIs for a reward model -- `POST /classify`, `/pooling`, `/score` -- through the batcher.

Shapes follow vLLM's protocol (vllm/entrypoints/pooling/{classify,pooling,
scoring}/protocol.py); fields vLLM would ignore are ignored. The head's one
output is the reward: `use_activation` true (vLLM's default) returns its
sigmoid, false the raw reward, which verl's reward-model client asks for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from services.core.errors import InvalidRequestError
from services.reward.http_json import (
    REQUEST_TIMEOUT_S,
    json_object,
    json_route,
    sigmoid,
    text_list,
    use_activation,
    vllm_error,
)
from services.reward.http_models import model_name, scorer_for
from services.reward.scorer import ScoreItem, member_mean
from services.reward.service import RewardService


async def score_members(
    service: RewardService, body: dict[str, Any], items: Sequence[ScoreItem]
) -> tuple[list[tuple[float, ...]], int]:
    """Every member's score of each item with the model the body names, and the tokens the model read."""
    service.validate_items(items)  # before a named version is loaded for a request that cannot run
    scorer = await scorer_for(service, body.get("model"))
    members, _ = await service.score_members(items, REQUEST_TIMEOUT_S, scorer.version)
    return members, sum(len(scorer.encode(item)) for item in items)


def usage(tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0, "prompt_tokens_details": None}


def reply(prefix: str, service: RewardService, body: dict[str, Any], data: list[dict], tokens: int) -> dict[str, Any]:
    """vLLM's list envelope around `data`."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": model_name(service, body),
        "data": data,
        "usage": usage(tokens),
    }


def _message_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content
    ):
        return "\n".join(part["text"] for part in content)
    raise InvalidRequestError(f"messages[{index}].content must be a string or a list of text parts")


def conversation_item(messages: Any) -> ScoreItem:
    """A chat as one (prompt, response): a final assistant turn is the response, the turns before it the prompt.

    A chat that does not end with the assistant is scored whole, like `input`.
    """
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError('"messages" must be a non-empty list')
    texts = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestError(f'messages[{index}] must be an object with a "role" and "content"')
        texts.append(_message_text(message.get("content"), index))
    if messages[-1]["role"] == "assistant":
        return ScoreItem("\n\n".join(texts[:-1]), texts[-1])
    return ScoreItem("", "\n\n".join(texts))


def input_items(body: dict[str, Any]) -> list[ScoreItem]:
    """Whole texts from `input` (each scored with an empty prompt), or one chat from `messages`."""
    if body.get("messages") is not None:
        if body.get("input") is not None:
            raise InvalidRequestError('send "input" or "messages", not both')
        return [conversation_item(body["messages"])]
    return [ScoreItem("", text) for text in text_list(body.get("input"), "input")]


def score_pairs(body: dict[str, Any]) -> list[ScoreItem]:
    """(prompt, response) pairs from `text_1`/`text_2` or `queries`/`documents`, 1:1, 1:N or N:N."""
    forms = [names for names in (("text_1", "text_2"), ("queries", "documents")) if any(n in body for n in names)]
    if len(forms) != 1:
        raise InvalidRequestError('send "text_1" and "text_2", or "queries" and "documents"')
    first, second = forms[0]
    prompts, responses = text_list(body.get(first), first), text_list(body.get(second), second)
    if len(prompts) == 1:
        prompts = prompts * len(responses)
    elif len(prompts) != len(responses):
        raise InvalidRequestError(
            f"Input lengths must be either 1:1, 1:N or N:N, got {len(prompts)} {first} and {len(responses)} {second}"
        )
    return [ScoreItem(p, r) for p, r in zip(prompts, responses, strict=True)]


def vllm_routes(service: RewardService, token: str | None) -> list[web.RouteDef]:
    async def classify(body: Any) -> dict[str, Any]:
        body = json_object(body)
        activate, items = use_activation(body), input_items(body)
        members, tokens = await score_members(service, body, items)
        rewards = [member_mean(m) for m in members]
        # One output class, the reward: there is no label to name (vLLM's `label` is optional).
        data = [
            {"index": i, "label": None, "probs": [sigmoid(r) if activate else r], "num_classes": 1}
            for i, r in enumerate(rewards)
        ]
        return reply("classify", service, body, data, tokens)

    async def pooling(body: Any) -> dict[str, Any]:
        body = json_object(body)
        if body.get("task") not in (None, "classify"):
            raise InvalidRequestError(f"task `{body['task']}` is not supported: this reward model serves `classify`")
        if body.get("encoding_format") not in (None, "float"):
            raise InvalidRequestError('only "encoding_format": "float" is supported')
        activate, items = use_activation(body), input_items(body)
        members, tokens = await score_members(service, body, items)
        # The head's raw outputs, one per ensemble member (one for a single model).
        data = [
            {"index": i, "object": "pooling", "data": [sigmoid(s) if activate else s for s in scores]}
            for i, scores in enumerate(members)
        ]
        return reply("pool", service, body, data, tokens)

    async def score(body: Any) -> dict[str, Any]:
        body = json_object(body)
        activate, items = use_activation(body), score_pairs(body)
        members, tokens = await score_members(service, body, items)
        rewards = [member_mean(m) for m in members]
        data = [{"index": i, "object": "score", "score": sigmoid(r) if activate else r} for i, r in enumerate(rewards)]
        return reply("score", service, body, data, tokens)

    # vLLM's paths: /v1/score is its older name for /score.
    return [
        json_route("POST", path, handle, vllm_error, token)
        for path, handle in (
            ("/classify", classify),
            ("/pooling", pooling),
            ("/score", score),
            ("/v1/score", score),
        )
    ]
