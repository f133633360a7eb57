"""`rlhf-loop serve policy`: the policy service process."""

from __future__ import annotations

import asyncio

from services.policy.metrics import PREFIX, PolicyMetrics
from services.policy.service import PolicyService, PolicyServiceConfig
from services.policy.servicer import SERVICE_NAME, PolicyServicer
from services.proto.rlhf.v1 import policy_pb2_grpc
from services.rpc.server_runtime import ServerSettings, serve


async def run_policy_server(settings: ServerSettings, config: PolicyServiceConfig) -> None:
    metrics = PolicyMetrics()
    service = PolicyService(config, metrics)

    def register(server) -> list[str]:
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyServicer(service), server)
        return [SERVICE_NAME]

    await serve(
        settings,
        register=register,
        metrics_registry=metrics.registry,
        metrics_prefix=PREFIX,
        on_start=service.start,
    )


def main(settings: ServerSettings, config: PolicyServiceConfig) -> None:
    asyncio.run(run_policy_server(settings, config))
