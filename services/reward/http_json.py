"""What the reward service's JSON endpoints share: bearer-token auth, body parsing, field checks, errors.

Each API family (OpenRLHF, vLLM, Cohere/Jina) keeps its own error body; the
statuses come from the ServiceError kinds, so a full queue is 429 and a bad
field 400 on every endpoint alike.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from services.core.errors import BodyTooLargeError, InvalidRequestError, NotFoundError, ServiceError, UnauthorizedError

REQUEST_TIMEOUT_S = 60.0  # HTTP callers send no deadline; items still queued after this are dropped

ErrorBody = Callable[[ServiceError], dict[str, Any]]
JsonHandler = Callable[[Any], Awaitable[dict[str, Any]]]


class ModelNotFoundError(NotFoundError):
    """vLLM's answer to a `model` it does not serve: 404, naming the parameter."""

    param = "model"


def vllm_error(error: ServiceError) -> dict[str, Any]:
    """vLLM's ErrorResponse as of vllm/entrypoints/openai/engine/protocol.py (2025+): `{"error": ErrorInfo}`.

    (vLLM before 0.10 answered a flat `{"object": "error", "message", ...}`.)
    """
    return {
        "error": {
            "message": str(error),
            "type": error_type(error.http_status),
            "param": getattr(error, "param", None),
            "code": error.http_status,
        }
    }


def error_type(status: int) -> str:
    """vLLM's error `type` names: 400 -> BadRequestError, 404 -> NotFoundError, 500 -> InternalServerError."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # 499, the client went away: nobody reads this reply
        return "ClientClosedRequestError"
    name = phrase.title().replace(" ", "").replace("-", "")
    return name if name.endswith("Error") else f"{name}Error"


def json_route(method: str, path: str, handle: JsonHandler, error_body: ErrorBody, token: str | None) -> web.RouteDef:
    """A route whose `handle` gets the parsed JSON body (None for GET) and returns the reply object.

    With a server token, a request without `Authorization: Bearer <token>` is
    refused (401) before its body is read, as gRPC refuses it with UNAUTHENTICATED.
    """
    expected = f"Bearer {token}".encode() if token else None

    async def handler(request: web.Request) -> web.Response:
        try:
            if expected is not None:
                presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
                if not hmac.compare_digest(presented, expected):
                    raise UnauthorizedError("missing or invalid bearer token")
            body = await _read_json(request) if request.method == "POST" else None
            reply = await handle(body)
        except ServiceError as error:
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthorizedError) else None
            return web.json_response(error_body(error), status=error.http_status, headers=headers)
        return web.json_response(reply)

    return web.route(method, path, handler)


async def _read_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge as error:
        raise BodyTooLargeError(error.text) from None
    except (ValueError, RecursionError) as error:  # RecursionError: JSON nested thousands deep
        raise InvalidRequestError(f"body is not JSON: {error}") from None


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequestError("expected a JSON object")
    return body


def text_list(value: Any, name: str) -> list[str]:
    """A string or a non-empty list of strings, as a list (vLLM's `input`, `text_1`, ... accept both)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequestError(f'"{name}" must be a string or a non-empty list of strings')
    for index, text in enumerate(value):
        if not isinstance(text, str):
            kind = "token ids are not supported: send text" if isinstance(text, int | list) else "must be a string"
            raise InvalidRequestError(f"{name}[{index}] {kind}")
    return value


def optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError(f'"{name}" must be true or false')
    return value


def use_activation(body: dict[str, Any]) -> bool:
    """vLLM's `use_activation` (`activation` before vLLM 0.11.2, as verl still sends); unset means true."""
    for name in ("use_activation", "activation"):
        value = optional_bool(body, name)
        if value is not None:
            return value
    return True


def sigmoid(x: float) -> float:
    """The activation of a one-output head (vLLM's classify default, a 0-1 relevance), safe for any |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
