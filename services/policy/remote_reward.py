"""The reward for GRPO/RLOO comes from the reward service: one batched Score call per generation batch.

TRL awaits `async` reward functions on its own event loop; AsyncRewardClient
opens its channel lazily, inside that loop.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from services.core.errors import PreconditionError, ServiceError
from services.reward.client import AsyncRewardClient


class RewardServiceUnavailableError(ServiceError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class ConservativeRewardError(PreconditionError):
    """A conservative reward was asked of a reward model that is no ensemble."""


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
    """`await reward(prompts=..., completions=...)` -> one reward-service score per completion.

    With `conservative_lambda` > 0 the score is an ensemble's mean minus
    lambda times its members' spread: uncertainty-weighted optimisation
    (Coste et al. 2024) pays the policy less where the reward models disagree,
    which is where a policy would overoptimise.
    """

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
        conservative_lambda: float = 0.0,
        version: str = "",
    ):
        self.conservative_lambda = conservative_lambda
        self.version = version  # "" follows the active version; a name pins the reward under the policy
        self.client = AsyncRewardClient(
            target, token=token, tls_ca=tls_ca, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s
        )
        self.versions: set[str] = set()

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
        try:
            items = list(zip(prompts, responses, strict=True))
            scores, spreads, version = await self.client.score_with_spread(items, version=self.version)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise ServiceError(
                    f"reward service refused the batch: {error.code().name}: {error.details()}"
                ) from None
            raise RewardServiceUnavailableError(
                f"reward service at {self.client.target} unavailable after {self.client.retry.retries + 1} attempts: "
                f"{error.details()}"
            ) from error
        self.versions.add(version)
        if not self.conservative_lambda:
            return scores
        if not spreads:
            raise ConservativeRewardError(
                f"conservative_lambda {self.conservative_lambda} needs an ensemble reward model; {version} is a "
                "single model (train one with ensemble_size > 1)"
            )
        return [mean - self.conservative_lambda * spread for mean, spread in zip(scores, spreads, strict=True)]
