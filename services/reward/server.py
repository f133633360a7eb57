"""`rlhf-loop serve reward`: the reward service process."""

from __future__ import annotations

import asyncio

import torch

from services.proto.rlhf.v1 import reward_pb2_grpc
from services.reward.http_models import models_routes
from services.reward.http_openrlhf import openrlhf_routes
from services.reward.http_rerank import rerank_routes
from services.reward.http_vllm import vllm_routes
from services.reward.metrics import PREFIX, RewardMetrics
from services.reward.service import RewardService, RewardServiceConfig
from services.reward.servicer import SERVICE_NAME, RewardServicer
from services.rpc.server_runtime import ServerSettings, serve


async def run_reward_server(settings: ServerSettings, config: RewardServiceConfig) -> None:
    metrics = RewardMetrics()
    service = RewardService(config, metrics)

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
    )


def main(settings: ServerSettings, config: RewardServiceConfig, threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(threads)
    asyncio.run(run_reward_server(settings, config))
