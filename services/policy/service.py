"""The policy service's work in plain Python: lifecycle, versions and generation; training and evaluation delegated."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.core.errors import InvalidRequestError, PreconditionError
from services.core.loader import load_function
from services.core.rankings import Ranking
from services.models.loading import resolve_model
from services.models.registry import ModelRegistry, VersionInfo
from services.policy.evaluation import Evaluation, evaluate
from services.policy.generation import Generated, GenerationBackend, TransformersBackend, select_backend
from services.policy.metrics import PolicyMetrics
from services.policy.policy_model import PolicyModel, pick_device
from services.policy.remote_reward import ConservativeRewardError, RemoteReward
from services.policy.sampling import Sampling
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.data import TrainingData
from services.policy.training.launch import LaunchSpec
from services.policy.training.runner import TrainingRunner

log = logging.getLogger(__name__)

VERSION_PREFIX = "policy"


@dataclass
class PolicyServiceConfig:
    registry_dir: Path
    base_model: str = "smollm2"
    reward_target: str | None = None
    reward_token: str | None = None
    reward_tls_ca: Path | None = None
    generation_backend: str = "transformers"
    max_prompts: int = 64
    max_n: int = 16
    max_new_tokens: int = 512
    max_prompt_chars: int = 8192
    default_max_new_tokens: int = 64
    train_launch: LaunchSpec = field(default_factory=LaunchSpec)  # several processes (and nodes): torchrun, DDP or FSDP
    gold_scorer: str | None = None  # "module:function" taking (prompt, response) -> float
    trust_remote_code: bool = False


class PolicyService:
    def __init__(self, config: PolicyServiceConfig, metrics: PolicyMetrics | None = None):
        config.train_launch.validate(cuda=pick_device().type == "cuda")  # before the model loads
        self.config = config
        self.metrics = metrics or PolicyMetrics()
        self.registry = ModelRegistry(config.registry_dir, VERSION_PREFIX)
        self.backend_name = select_backend(config.generation_backend)
        self.base_path: Path | None = None
        self.policy: PolicyModel | None = None
        self.backend: GenerationBackend | None = None
        self.gold = load_function(config.gold_scorer, "gold scorer") if config.gold_scorer else None
        self.reward = (
            RemoteReward(config.reward_target, token=config.reward_token, tls_ca=config.reward_tls_ca)
            if config.reward_target
            else None
        )
        self.runner = TrainingRunner(
            self.registry,
            self.metrics,
            launch=config.train_launch,
            reward_target=config.reward_target,
            reward_token=config.reward_token,
            reward_tls_ca=config.reward_tls_ca,
        )
        self._training_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.base_path = await asyncio.to_thread(resolve_model, self.config.base_model)
        self.registry.ensure_base({"base_model": str(self.base_path)})
        self.policy = await asyncio.to_thread(
            PolicyModel, self.base_path, trust_remote_code=self.config.trust_remote_code
        )
        if self.backend_name == "vllm":
            from services.policy.generation import VllmBackend

            self.backend = await asyncio.to_thread(VllmBackend, self.base_path, self.policy.tokenizer)
        else:
            self.backend = TransformersBackend(self.policy)
        self._publish_active()
        log.info(
            "policy model loaded",
            extra={"base": str(self.base_path), "device": str(self.policy.device), "backend": self.backend_name},
        )

    def _publish_active(self) -> None:
        self.metrics.model.info({"version": self.registry.active, "backend": self.backend_name})

    def _version(self, name: str) -> VersionInfo:
        return self.registry.get(name or self.registry.active)

    @property
    def training(self) -> bool:
        return self._training_lock.locked()

    # -- generation ------------------------------------------------------------
    def validate_prompts(self, prompts: Sequence[str], per_request_limit: bool = True) -> None:
        """Non-empty prompts within the length limit; at most max_prompts when they are one Generate batch."""
        if not prompts:
            raise InvalidRequestError("no prompts")
        if per_request_limit and len(prompts) > self.config.max_prompts:
            raise InvalidRequestError(f"{len(prompts)} prompts exceed the limit of {self.config.max_prompts}")
        for index, prompt in enumerate(prompts):
            if not prompt.strip():
                raise InvalidRequestError(f"prompts[{index}] is empty")
            if len(prompt) > self.config.max_prompt_chars:
                raise InvalidRequestError(
                    f"prompts[{index}] has {len(prompt)} characters; the limit is {self.config.max_prompt_chars}"
                )

    async def generate(
        self, prompts: Sequence[str], n: int, sampling: Sampling, version: str = "", timeout_s: float | None = None
    ) -> tuple[list[list[Generated]], str]:
        self.validate_prompts(prompts)
        if not 1 <= n <= self.config.max_n:
            raise InvalidRequestError(f"n must be in [1, {self.config.max_n}], got {n}")
        sampling.validate(self.config.max_new_tokens)
        info = self._version(version)
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        started = time.perf_counter()
        results = await asyncio.to_thread(self.backend.generate, info, list(prompts), n, sampling, deadline)
        tokens = sum(g.completion_tokens for row in results for g in row)
        self.metrics.generated_tokens.inc(tokens)
        self.metrics.tokens_per_second.set(tokens / max(time.perf_counter() - started, 1e-9))
        self.metrics.generate_batch.observe(len(prompts) * n)
        return results, info.id

    # -- versions --------------------------------------------------------------
    async def promote(self, version: str) -> tuple[str, str]:
        """Load the version's weights first, then move the pointer: Generate never waits on a load."""
        info = self.registry.get(version)

        def load() -> None:
            with self.policy.lock, self.policy.using(info):
                pass

        await asyncio.to_thread(load)
        active, previous = self.registry.promote(version)
        self.metrics.version_changes.labels("promote").inc()
        self._publish_active()
        return active, previous

    async def rollback(self) -> tuple[str, str]:
        active, previous = self.registry.rollback()
        self.metrics.version_changes.labels("rollback").inc()
        self._publish_active()
        return active, previous

    def versions(self) -> tuple[list[VersionInfo], str]:
        return self.registry.list(), self.registry.active

    # -- training --------------------------------------------------------------
    async def _check_ensemble(self) -> None:
        """A conservative reward needs the spread of an ensemble: refuse before any work when there is none."""
        info = await self.reward.client.info(timeout_s=10)
        if info.ensemble_size < 2:
            raise ConservativeRewardError(
                f"conservative_lambda needs an ensemble reward model; the active {info.active_version} is a single "
                "model (train one with ensemble_size > 1)"
            )

    async def train(
        self,
        prompts: Sequence[str],
        rankings: Sequence[Ranking],
        config: PolicyTrainConfig,
        *,
        on_progress: Callable[[dict], None],
        stop: asyncio.Event,
    ) -> VersionInfo:
        """Train a new version in a worker process; resumes when an identical run left a checkpoint."""
        config.validate()
        init = self._version(config.init_version) if config.init_version else self.registry.list()[0]
        if config.method == "dpo":
            data = TrainingData.from_rankings(rankings)
        else:
            self.validate_prompts(prompts, per_request_limit=False)  # training batches them itself
            await self.runner.check_reward_service()
            if config.conservative_lambda:
                await self._check_ensemble()
            data = TrainingData.from_prompts(prompts)
        if self._training_lock.locked():
            raise PreconditionError("a training run is already in progress; wait for it or cancel it")
        async with self._training_lock:
            version = await self.runner.run(
                init,
                self.base_path,
                config,
                data,
                on_progress=on_progress,
                stop=stop,
            )
            if config.promote:
                await self.promote(version.id)
            return self.registry.get(version.id)

    # -- evaluation ------------------------------------------------------------
    async def evaluate(
        self, candidate: str, baseline: str, prompts: Sequence[str], sampling: Sampling, timeout_s: float | None
    ) -> Evaluation:
        """One sample per prompt from each version (same seed), scored by the reward service (and gold)."""
        if self.reward is None:
            raise PreconditionError("evaluation needs a reward service: start the policy service with --reward-url")
        if not candidate:
            raise InvalidRequestError("name the candidate version")
        self.validate_prompts(prompts, per_request_limit=False)
        return await evaluate(
            self._version(candidate),
            self._version(baseline),
            prompts,
            sampling,
            timeout_s,
            generate=self.generate,
            batch_size=self.config.max_prompts,
            policy=self.policy,
            reference=self.registry.list()[0],  # the base model: what the trainers' KL penalty measures against
            reward=self.reward,
            gold=self.gold,
        )
