"""The policy service's work in plain Python: versions, generation, training runs, evaluation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.env import REWARD_TOKEN_ENV
from services.core.errors import CancelledError, InvalidRequestError, PreconditionError, ServiceError
from services.core.loader import load_function
from services.core.rankings import Ranking, dataset_hash, group_pairs_by_prompt
from services.core.win_rate import win_rate
from services.models.loading import resolve_model
from services.models.registry import ModelRegistry, VersionInfo
from services.policy.generation import Generated, GenerationBackend, Sampling, TransformersBackend, select_backend
from services.policy.metrics import PolicyMetrics
from services.policy.policy_model import PolicyModel, completion_logprobs
from services.policy.remote_reward import RemoteReward, RewardServiceUnavailableError
from services.policy.train_config import PolicyTrainConfig
from services.rpc.client import open_aio_channel

log = logging.getLogger(__name__)

VERSION_PREFIX = "policy"
ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parent / "accelerate"  # package data: present in any install


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
    train_processes: int = 1  # >1: training runs under `accelerate launch` (DDP)
    gold_scorer: str | None = None  # "module:function" taking (prompt, response) -> float
    trust_remote_code: bool = False


@dataclass(frozen=True)
class Evaluation:
    candidate_mean_reward: float
    baseline_mean_reward: float
    win_rate: float
    kl_to_reference: float
    prompts: int
    reward_version: str
    gold_win_rate: float | None = None
    candidate_mean_gold: float | None = None
    baseline_mean_gold: float | None = None


class PolicyService:
    def __init__(self, config: PolicyServiceConfig, metrics: PolicyMetrics | None = None):
        self.config = config
        self.metrics = metrics or PolicyMetrics()
        self.registry = ModelRegistry(config.registry_dir, VERSION_PREFIX)
        self.runs_dir = Path(config.registry_dir) / "runs"
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
        self._training_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.base_path = await asyncio.to_thread(resolve_model, self.config.base_model)
        if not self.registry.list():
            base = self.registry.commit(
                self.registry.staging_dir(),
                {"format": "base", "parent": "", "base_model": str(self.base_path), "metrics": {}},
            )
            self.registry.promote(base.id)
        elif not self.registry.active:
            self.registry.promote(self.registry.list()[0].id)
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
    async def _check_reward_service(self) -> None:
        if self.reward is None:
            raise PreconditionError("grpo and rloo need a reward service: start the policy service with --reward-url")
        async with open_aio_channel(self.config.reward_target, self.config.reward_tls_ca) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as error:
                raise RewardServiceUnavailableError(
                    f"reward service at {self.config.reward_target} is unavailable: {error.details()}"
                ) from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RewardServiceUnavailableError(f"reward service at {self.config.reward_target} is not serving")

    def _worker_command(self, spec_path: Path) -> list[str]:
        # Through orphan_guard: the worker (or accelerate's launcher) dies if this service is killed.
        guarded = [sys.executable, "-m", "services.policy.orphan_guard", str(os.getpid())]
        if self.config.train_processes <= 1:
            return [*guarded, "services.policy.train_worker", str(spec_path)]
        accelerate_config = ACCELERATE_CONFIG_DIR / (
            "gpu_ddp.yaml" if self.policy.device.type == "cuda" else "cpu_ddp.yaml"
        )
        return [
            *guarded, "accelerate.commands.launch",
            "--config_file", str(accelerate_config),
            "--num_processes", str(self.config.train_processes),
            "-m", "services.policy.train_worker", str(spec_path),
        ]  # fmt: skip

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
        data: dict
        if config.method == "dpo":
            for ranking in rankings:
                ranking.validate()
            pairs = [p for group in group_pairs_by_prompt(rankings).values() for p in group]
            if not pairs:
                raise PreconditionError(f"dpo needs preference pairs; {len(rankings)} rankings gave none")
            data = {"pairs": [vars(p) for p in pairs]}
            data_digest = dataset_hash(rankings)
        else:
            self.validate_prompts(prompts, per_request_limit=False)  # training batches them itself
            await self._check_reward_service()
            data = {"prompts": list(prompts)}
            data_digest = hashlib.sha256(json.dumps(sorted(prompts)).encode()).hexdigest()[:16]
        if self._training_lock.locked():
            raise PreconditionError("a training run is already in progress; wait for it or cancel it")
        async with self._training_lock:
            return await self._run_worker(init, config, data, data_digest, on_progress, stop)

    async def _run_worker(
        self,
        init: VersionInfo,
        config: PolicyTrainConfig,
        data: dict,
        data_digest: str,
        on_progress: Callable[[dict], None],
        stop: asyncio.Event,
    ) -> VersionInfo:
        init_format = init.metadata.get("format")
        base_model = str(init.path) if init_format == "full" else str(self.base_path)
        identity = {k: v for k, v in config.as_dict().items() if k != "promote"}
        run_key = hashlib.sha256(
            json.dumps([identity, data_digest, init.id, base_model, self.config.train_processes]).encode()
        ).hexdigest()[:16]
        run_dir = self.runs_dir / run_key
        run_dir.mkdir(parents=True, exist_ok=True)
        staging = self.registry.staging_dir()
        spec = {
            "config": config.as_dict(),
            "base_model": base_model,
            "init_adapter": str(init.path) if init_format == "lora" else None,
            "run_dir": str(run_dir),
            "output_dir": str(staging),
            "reward_target": self.config.reward_target,
            "reward_tls_ca": str(self.config.reward_tls_ca) if self.config.reward_tls_ca else None,
            **data,
        }
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, REWARD_TOKEN_ENV: self.config.reward_token or "", "PYTHONUNBUFFERED": "1"}
        self.metrics.training.set(1)
        log.info("training started", extra={"method": config.method, "run": run_key, "init": init.id})
        summary, failure, outcome = None, None, "failed"
        try:
            with open(run_dir / "worker.log", "ab") as worker_log:
                process = await asyncio.create_subprocess_exec(
                    *self._worker_command(spec_path),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=worker_log,
                    env=env,
                )
                summary, failure = await self._follow(process, on_progress, stop)
            if stop.is_set():
                outcome = "cancelled"
                raise CancelledError(f"training cancelled; its checkpoints stay in {run_dir} for a resume")
            if failure is not None:
                if failure.get("kind") == "unavailable":
                    raise RewardServiceUnavailableError(failure["message"])
                raise ServiceError(failure["message"])
            if process.returncode != 0 or summary is None:
                tail = (run_dir / "worker.log").read_text(errors="replace")[-2000:]
                raise ServiceError(f"training worker exited with {process.returncode}: {tail}")
            version = self.registry.commit(
                staging,
                {
                    "format": "lora" if config.use_lora or init_format == "lora" else "full",
                    "method": config.method,
                    "parent": init.id,
                    "base_model": base_model,
                    "config": config.as_dict(),
                    "data_hash": data_digest,
                    "reward_versions": summary.get("reward_versions", []),
                    "metrics": {k: v for k, v in summary.items() if isinstance(v, int | float) and math.isfinite(v)},
                },
            )
            outcome = "completed"
        finally:
            self.metrics.training.set(0)
            self.metrics.train_runs.labels(config.method, outcome).inc()
            if outcome != "completed":
                shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        steps = version.metadata["metrics"].get("steps")
        log.info(
            "training finished",
            extra={"version": version.id, "method": config.method, "steps": steps, "max_steps": config.max_steps},
        )
        if config.promote:
            await self.promote(version.id)
        return self.registry.get(version.id)

    async def _follow(
        self, process: asyncio.subprocess.Process, on_progress: Callable[[dict], None], stop: asyncio.Event
    ) -> tuple[dict | None, dict | None]:
        """Relay the worker's JSON-line events until it exits; terminate it when `stop` is set."""
        summary = failure = None
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                reader = asyncio.ensure_future(process.stdout.readline())
                await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not reader.done():
                    reader.cancel()
                    process.terminate()
                    break
                line = reader.result()
                if not line:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a library printed to stdout; only our events are JSON
                if event.get("type") == "progress":
                    self._record_progress(event)
                    on_progress(event)
                elif event.get("type") == "done":
                    summary = event
                elif event.get("type") == "error":
                    failure = event
        except asyncio.CancelledError:
            process.terminate()
            raise
        finally:
            stopper.cancel()
            await process.wait()
        return summary, failure

    def _record_progress(self, event: dict) -> None:
        self.metrics.train_step_seconds.observe(event["step_seconds"])
        for gauge, key in (
            (self.metrics.train_loss, "loss"),
            (self.metrics.reward_mean, "reward_mean"),
            (self.metrics.reward_std, "reward_std"),
            (self.metrics.kl, "kl"),
        ):
            if math.isfinite(event.get(key, math.nan)):
                gauge.set(event[key])

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
        candidate_info, baseline_info = self._version(candidate), self._version(baseline)
        sampling = Sampling(sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.seed or 0)
        new_texts = await self._one_sample_each(prompts, sampling, candidate_info.id, timeout_s)
        old_texts = await self._one_sample_each(prompts, sampling, baseline_info.id, timeout_s)
        new_scores = await self.reward(prompts=list(prompts), completions=new_texts)
        old_scores = await self.reward(prompts=list(prompts), completions=old_texts)
        kl = await asyncio.to_thread(self._kl_to_reference, candidate_info, list(prompts), new_texts)
        result = {
            "candidate_mean_reward": sum(new_scores) / len(new_scores),
            "baseline_mean_reward": sum(old_scores) / len(old_scores),
            "win_rate": win_rate(new_scores, old_scores),
            "kl_to_reference": kl,
            "prompts": len(prompts),
            "reward_version": ",".join(sorted(self.reward.versions)),
        }
        if self.gold is not None:
            new_gold = [float(self.gold(p, t)) for p, t in zip(prompts, new_texts, strict=True)]
            old_gold = [float(self.gold(p, t)) for p, t in zip(prompts, old_texts, strict=True)]
            result |= {
                "gold_win_rate": win_rate(new_gold, old_gold),
                "candidate_mean_gold": sum(new_gold) / len(new_gold),
                "baseline_mean_gold": sum(old_gold) / len(old_gold),
            }
        return Evaluation(**result)

    async def _one_sample_each(
        self, prompts: Sequence[str], sampling: Sampling, version: str, timeout_s: float | None
    ) -> list[str]:
        """One completion per prompt, in Generate-sized batches (evaluation sets can be larger)."""
        texts = []
        for start in range(0, len(prompts), self.config.max_prompts):
            rows, _ = await self.generate(
                prompts[start : start + self.config.max_prompts], 1, sampling, version, timeout_s
            )
            texts += [row[0].text for row in rows]
        return texts

    def _kl_to_reference(self, candidate: VersionInfo, prompts: list[str], texts: list[str]) -> float:
        """Mean over samples of log p_candidate(y) - log p_reference(y); the reference is the base model."""
        reference = self.registry.list()[0]
        with self.policy.lock:
            with self.policy.using(candidate) as model:
                new = completion_logprobs(model, self.policy.tokenizer, prompts, texts)
            with self.policy.using(reference) as model:
                ref = completion_logprobs(model, self.policy.tokenizer, prompts, texts)
        return sum(n - r for n, r in zip(new, ref, strict=True)) / len(texts)
