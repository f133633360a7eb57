"""gRPC PolicyService: translates protobuf to PolicyService calls and errors to status codes."""

from __future__ import annotations

import asyncio

from services.core.errors import ServiceError
from services.policy.sampling import Sampling
from services.policy.service import PolicyService
from services.policy.training.config import PolicyTrainConfig
from services.proto.rlhf.v1 import policy_pb2, policy_pb2_grpc
from services.rpc.proto_convert import config_from_proto, ranking_from_proto
from services.rpc.server_runtime import relay_events
from services.rpc.version_rpcs import VersionRpcs, version_to_proto

SERVICE_NAME = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name


def sampling_from_proto(message: policy_pb2.SamplingParams, default_max_new_tokens: int) -> Sampling:
    return Sampling(
        temperature=message.temperature if message.HasField("temperature") else 1.0,
        top_p=message.top_p if message.HasField("top_p") else 1.0,
        max_new_tokens=message.max_new_tokens if message.HasField("max_new_tokens") else default_max_new_tokens,
        seed=message.seed if message.HasField("seed") else None,
    )


class PolicyServicer(VersionRpcs, policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, service: PolicyService):
        self.service = service

    async def Generate(self, request, context):
        sampling = sampling_from_proto(request.sampling, self.service.config.default_max_new_tokens)
        try:
            results, version = await self.service.generate(
                list(request.prompts), request.n, sampling, request.version, context.time_remaining()
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        return policy_pb2.GenerateResponse(
            results=[
                policy_pb2.PromptCompletions(
                    completions=[
                        policy_pb2.Completion(
                            text=g.text,
                            prompt_tokens=g.prompt_tokens,
                            completion_tokens=g.completion_tokens,
                            logprob_sum=g.logprob_sum,
                            finish_reason=g.finish_reason,
                        )
                        for g in row
                    ]
                )
                for row in results
            ],
            version=version,
        )

    async def Train(self, request, context):
        config = config_from_proto(request.config, PolicyTrainConfig())
        rankings = [ranking_from_proto(r) for r in request.rankings]
        events: asyncio.Queue[dict] = asyncio.Queue()
        stop = asyncio.Event()
        # A cancelled call sets `stop`; the worker is stopped and its checkpoints stay for a resume.
        task = asyncio.create_task(
            self.service.train(list(request.prompts), rankings, config, on_progress=events.put_nowait, stop=stop)
        )
        try:
            async for e in relay_events(task, events):
                yield policy_pb2.PolicyTrainEvent(
                    progress=policy_pb2.PolicyTrainProgress(
                        step=e["step"],
                        total_steps=e["total_steps"],
                        loss=e["loss"],
                        reward_mean=e["reward_mean"],
                        reward_std=e["reward_std"],
                        kl=e["kl"],
                        step_seconds=e["step_seconds"],
                        resumed=e["resumed"],
                    )
                )
            version = task.result()
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        except asyncio.CancelledError:
            stop.set()
            raise
        yield policy_pb2.PolicyTrainEvent(version=version_to_proto(version, self.service.registry.active))

    async def Evaluate(self, request, context):
        sampling = sampling_from_proto(request.sampling, self.service.config.default_max_new_tokens)
        try:
            result = await self.service.evaluate(
                request.candidate, request.baseline, list(request.prompts), sampling, context.time_remaining()
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        gold = result.gold_win_rate is not None
        return policy_pb2.EvaluateResponse(
            candidate_mean_reward=result.candidate_mean_reward,
            baseline_mean_reward=result.baseline_mean_reward,
            win_rate=result.win_rate,
            kl_to_reference=result.kl_to_reference,
            has_gold=gold,
            gold_win_rate=result.gold_win_rate if gold else 0.0,
            candidate_mean_gold=result.candidate_mean_gold if gold else 0.0,
            baseline_mean_gold=result.baseline_mean_gold if gold else 0.0,
            prompts=result.prompts,
            reward_version=result.reward_version,
        )

    async def GetInfo(self, request, context):
        c = self.service.config
        return policy_pb2.PolicyInfo(
            active_version=self.service.registry.active,
            base_model=str(self.service.base_path),
            generation_backend=self.service.backend_name,
            device=str(self.service.policy.device),
            max_prompts=c.max_prompts,
            max_n=c.max_n,
            max_new_tokens=c.max_new_tokens,
            max_prompt_chars=c.max_prompt_chars,
            training=self.service.training,
            reward_target=c.reward_target or "",
        )
