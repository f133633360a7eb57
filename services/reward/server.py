"""`rlhf-loop serve reward`: the reward service, in one process or in several that share its gRPC port."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial
from multiprocessing.process import BaseProcess

import torch

from services.core.structured_logging import configure_logging
from services.proto.rlhf.v1 import reward_pb2_grpc
from services.reward.http_models import models_routes
from services.reward.http_openrlhf import openrlhf_routes
from services.reward.http_rerank import rerank_routes
from services.reward.http_vllm import vllm_routes
from services.reward.metrics import PREFIX, RewardMetrics
from services.reward.null_scorer import NULL_MODEL, NullRewardService
from services.reward.service import RewardService, RewardServiceConfig
from services.reward.servicer import SERVICE_NAME, RewardServicer
from services.rpc.server_runtime import CompanionExitedError, ServerSettings, serve, spawn_companions

log = logging.getLogger(__name__)


async def run_reward_server(
    settings: ServerSettings,
    config: RewardServiceConfig,
    *,
    null_model: bool = False,
    companions: Sequence[BaseProcess] = (),
) -> None:
    metrics = RewardMetrics()
    service = (NullRewardService if null_model else RewardService)(config, metrics)

    def register(server) -> list[str]:
        reward_pb2_grpc.add_RewardServiceServicer_to_server(RewardServicer(service), server)
        return [SERVICE_NAME]

    # The scoring routes take the same bearer token as the RPCs; /metrics stays open for Prometheus.
    token = settings.auth_token
    http_routes = [
        *openrlhf_routes(service, token),
        *vllm_routes(service, token),
        *rerank_routes(service, token),
        *models_routes(service, token),
    ]
    await serve(
        settings,
        register=register,
        metrics_registry=metrics.registry,
        metrics_prefix=PREFIX,
        http_routes=http_routes,
        on_start=service.start,
        on_stop=service.stop,
        companions=companions,
    )


def main(
    settings: ServerSettings,
    config: RewardServiceConfig,
    threads: int | None = None,
    *,
    processes: int = 1,
    null_model: bool = False,
) -> None:
    """Serve in this process and `processes - 1` companions on the same gRPC port; process i's HTTP is on
    metrics_port + i, so Prometheus scrapes each process as its own target."""
    if processes < 1:
        sys.exit("rlhf-loop serve reward: --processes must be at least 1")
    if null_model:
        log.warning("serving the null model, a benchmark stand-in: scores are response lengths, not rewards")
        config = dataclasses.replace(config, base_model=NULL_MODEL)
    if processes > 1 and not threads:
        # Each process's torch would otherwise start a thread per core, N times over.
        threads = max(1, len(os.sched_getaffinity(0)) // processes)
    one = partial(_serve_one, settings, config, threads, null_model, logging.getLogger().level)
    companions = spawn_companions(processes - 1, one)
    try:
        one(0, companions)
    except CompanionExitedError as error:
        sys.exit(f"rlhf-loop serve reward: {error}")


def _serve_one(
    settings: ServerSettings,
    config: RewardServiceConfig,
    threads: int | None,
    null_model: bool,
    log_level: int,
    index: int,
    companions: Sequence[BaseProcess] = (),
) -> None:
    if index:
        configure_logging(logging.getLevelName(log_level))  # a spawned process starts with none
        settings = dataclasses.replace(settings, metrics_port=settings.metrics_port + index)
    if companions or index:
        # Each process heartbeats as a replica of its own; a given --replica-id names the group.
        config = dataclasses.replace(config, replica_id=config.replica_id and f"{config.replica_id}-{index}")
    if threads:
        torch.set_num_threads(threads)
    asyncio.run(run_reward_server(settings, config, null_model=null_model, companions=companions))
