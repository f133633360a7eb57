"""Runs policy training in a worker process, relays its events, and commits what it saved as a new version."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.env import REWARD_TOKEN_ENV
from services.core.errors import CancelledError, PreconditionError, ServiceError
from services.models.registry import ModelRegistry, VersionInfo
from services.policy.metrics import PolicyMetrics
from services.policy.remote_reward import RewardServiceUnavailableError
from services.policy.training import events
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.data import TrainingData
from services.policy.training.launch import LaunchSpec
from services.policy.training.spec import TrainSpec
from services.rpc.client import open_aio_channel

log = logging.getLogger(__name__)


def worker_command(spec_path: Path, launch: LaunchSpec) -> list[str]:
    """This node's command line of the run: one worker process, or torchrun's for several (on one node or more)."""
    # Through orphan_guard: the worker (or torchrun) dies if this service is killed.
    guarded = [sys.executable, "-m", "services.policy.training.orphan_guard", str(os.getpid())]
    return [*guarded, *launch.worker_command([str(spec_path)])]


def run_key(config: PolicyTrainConfig, data_digest: str, init_id: str, base_model: Path, launch: LaunchSpec) -> str:
    """Names the run directory: a restarted identical run finds the checkpoints the last one left."""
    identity = {k: v for k, v in config.as_dict().items() if k != "promote"}  # promoting after changes no weights
    return hashlib.sha256(
        json.dumps([identity, data_digest, init_id, str(base_model), *launch.run_identity()]).encode()
    ).hexdigest()[:16]


class TrainingRunner:
    """Trains new policy versions under `registry.root/runs`, one worker process (group) per run."""

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: PolicyMetrics,
        *,
        launch: LaunchSpec | None = None,
        reward_target: str | None = None,
        reward_token: str | None = None,
        reward_tls_ca: Path | None = None,
    ):
        self.registry = registry
        self.metrics = metrics
        self.runs_dir = registry.root / "runs"
        self.launch = launch or LaunchSpec()  # one process
        self.reward_target = reward_target
        self.reward_token = reward_token
        self.reward_tls_ca = reward_tls_ca

    async def check_reward_service(self) -> None:
        """Fail before any work when grpo or rloo could not reach a serving reward service."""
        if not self.reward_target:
            raise PreconditionError("grpo and rloo need a reward service: start the policy service with --reward-url")
        async with open_aio_channel(self.reward_target, self.reward_tls_ca) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as error:
                raise RewardServiceUnavailableError(
                    f"reward service at {self.reward_target} is unavailable: {error.details()}"
                ) from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RewardServiceUnavailableError(f"reward service at {self.reward_target} is not serving")

    async def run(
        self,
        init: VersionInfo,
        base_path: Path,
        config: PolicyTrainConfig,
        data: TrainingData,
        *,
        on_progress: Callable[[dict], None],
        stop: asyncio.Event,
    ) -> VersionInfo:
        """Train from `init` and commit the result; an identical run resumes from the checkpoints it left."""
        init_format = init.format
        base_model = init.path if init_format == "full" else base_path
        key = run_key(config, data.digest, init.id, base_model, self.launch)
        run_dir = self.runs_dir / key
        run_dir.mkdir(parents=True, exist_ok=True)
        staging = self.registry.staging_dir()
        spec_path = run_dir / "spec.json"
        TrainSpec(
            config=config,
            base_model=base_model,
            init_adapter=init.path if init_format == "lora" else None,
            run_dir=run_dir,
            output_dir=staging,
            reward_target=self.reward_target,
            reward_tls_ca=self.reward_tls_ca,
            prompts=data.prompts,
            pairs=data.pairs,
            strategy=self.launch.strategy,
        ).write(spec_path)
        self.metrics.training.set(1)
        log.info(
            "training started",
            extra={"method": config.method, "run": key, "init": init.id, "nodes": self.launch.nodes},
        )
        outcome = "failed"
        try:
            summary = await self._work(spec_path, run_dir, on_progress, stop)
            version = self.registry.commit(
                staging,
                {
                    "format": "lora" if config.use_lora or init_format == "lora" else "full",
                    "method": config.method,
                    "parent": init.id,
                    "base_model": str(base_model),
                    "config": config.as_dict(),
                    "data_hash": data.digest,
                    "reward_versions": summary.get("reward_versions", []),
                    "metrics": {k: v for k, v in summary.items() if isinstance(v, int | float) and math.isfinite(v)},
                },
            )
            outcome = "completed"
        except CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.metrics.training.set(0)
            self.metrics.train_runs.labels(config.method, outcome).inc()
            if outcome != "completed":
                self.registry.discard(staging)
        shutil.rmtree(run_dir, ignore_errors=True)
        steps = version.metadata["metrics"].get("steps")
        log.info(
            "training finished",
            extra={"version": version.id, "method": config.method, "steps": steps, "max_steps": config.max_steps},
        )
        return version

    async def _work(
        self,
        spec_path: Path,
        run_dir: Path,
        on_progress: Callable[[dict], None],
        stop: asyncio.Event,
    ) -> dict:
        """Run the worker to its end and return its summary; raise what it reported, or its log's tail."""
        # The token goes by environment so it is never written into the run directory.
        env = {**os.environ, REWARD_TOKEN_ENV: self.reward_token or "", "PYTHONUNBUFFERED": "1"}
        with open(run_dir / "worker.log", "ab") as worker_log:
            process = await asyncio.create_subprocess_exec(
                *worker_command(spec_path, self.launch),
                stdout=asyncio.subprocess.PIPE,
                stderr=worker_log,
                env=env,
            )
            summary, failure = await self._follow(process, on_progress, stop)
        if stop.is_set():
            raise CancelledError(f"training cancelled; its checkpoints stay in {run_dir} for a resume")
        if failure is not None:
            if failure.get("kind") == "unavailable":
                raise RewardServiceUnavailableError(failure["message"])
            raise ServiceError(failure["message"])
        if process.returncode != 0 or summary is None:
            tail = (run_dir / "worker.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"training worker exited with {process.returncode}: {tail}")
        return summary

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
                event = events.parse(line)
                if event is None:
                    continue
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
        """Step time and the step's loss, reward and KL as metrics (NaN when the method logs none)."""
        self.metrics.train_step_seconds.observe(event["step_seconds"])
        for gauge, key in (
            (self.metrics.train_loss, "loss"),
            (self.metrics.reward_mean, "reward_mean"),
            (self.metrics.reward_std, "reward_std"),
            (self.metrics.kl, "kl"),
        ):
            if math.isfinite(event.get(key, math.nan)):
                gauge.set(event[key])
