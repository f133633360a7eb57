"""The reward service as a TRL reward function, for a GRPOTrainer or RLOOTrainer of your own.

    from trl import GRPOTrainer
    from services.reward.trl_reward import RemoteReward

    GRPOTrainer(model=..., reward_funcs=[RemoteReward("reward.internal:50051")], args=..., train_dataset=...)

Read from TRL 1.16's source: both trainers treat a callable instance as async when its `__call__` is a
coroutine function (`trl.trainer.utils.is_async_callable`), await it with asyncio.gather on an event loop of
their own in a daemon thread, and name its reward column and logs (`rewards/<name>/mean`) after its
`__name__`. This module needs only the client install (gRPC and protobuf): nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from services.policy import remote_reward


class RemoteReward(remote_reward.RemoteReward):
    """`await reward(prompts, completions, **kwargs)` -> one float per completion, from one Score request.

    Prompts and completions may be TRL's standard form (strings) or its conversational one (message
    lists: the prompt is its last user message, a completion the text of its messages). The policy
    service trains with the same class, so a user's trainer is paid exactly as ours is; an empty
    completion, which the service refuses to score, gets the lowest score of its batch.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        version: str = "",
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        conservative_lambda: float = 0.0,
        name: str = "reward_service",
    ):
        super().__init__(
            target,
            token=token,
            tls_ca=tls_ca,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            conservative_lambda=conservative_lambda,
            version=version,  # pinned, a promotion on the service mid-run cannot change the reward under the policy
        )
        # Two remote rewards in one trainer (two reward services, say) need two names: TRL keys logs by it.
        self.__name__ = name
