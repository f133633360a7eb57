"""The reward for GRPO/RLOO comes from the reward service: one batched Score call per generation batch.

TRL awaits `async` reward functions on its own event loop, so the grpc.aio
channel is created lazily inside that loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from services.core.errors import ServiceError
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.rpc.client import open_aio_channel

log = logging.getLogger(__name__)


class RewardServiceUnavailableError(ServiceError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


def completion_text(completion) -> str:
    """TRL passes plain strings, or message lists for conversational datasets."""
    if isinstance(completion, str):
        return completion
    return "".join(message.get("content", "") for message in completion)


def prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")


class RemoteReward:
    """`await reward(prompts=..., completions=...)` -> one reward-service score per completion."""

    __name__ = "reward_service"  # TRL names the reward column after the function

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 1.0,
    ):
        self.target = target
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.tls_ca = tls_ca
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.versions: set[str] = set()
        self._stub: reward_pb2_grpc.RewardServiceStub | None = None

    async def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        scored = [i for i, text in enumerate(texts) if text.strip()]
        scores = await self.score([prompt_text(prompts[i]) for i in scored], [texts[i] for i in scored])
        # An empty completion is a legitimate policy output but the reward service refuses
        # empty text: it scores as the worst of its batch, so the policy is not paid to go silent.
        floor = min(scores, default=0.0)
        by_index = dict(zip(scored, scores, strict=True))
        return [by_index.get(i, floor) for i in range(len(texts))]

    async def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One Score call, retried with backoff while the service is UNAVAILABLE."""
        if not responses:
            return []
        if self._stub is None:
            self._stub = reward_pb2_grpc.RewardServiceStub(open_aio_channel(self.target, self.tls_ca))
        request = reward_pb2.ScoreRequest(
            items=[reward_pb2.ScoreItem(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
        )
        for attempt in range(self.retries + 1):
            try:
                reply = await self._stub.Score(request, timeout=self.timeout_s, metadata=self.metadata)
                self.versions.add(reply.model_version)
                return list(reply.scores)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise ServiceError(
                        f"reward service refused the batch: {error.code().name}: {error.details()}"
                    ) from None
                if attempt == self.retries:
                    raise RewardServiceUnavailableError(
                        f"reward service at {self.target} unavailable after {self.retries + 1} attempts: "
                        f"{error.details()}"
                    ) from error
                delay = self.backoff_s * 2**attempt
                log.warning("reward service unavailable, retrying", extra={"target": self.target, "delay_s": delay})
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
