"""gRPC RewardService: translates protobuf to RewardService calls and errors to status codes."""

from __future__ import annotations

import asyncio
import threading

from services.core.errors import ServiceError
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.scorer import ScoreItem, member_mean
from services.reward.service import RewardService, spreads_of
from services.reward.train_config import RewardTrainConfig
from services.rpc.proto_convert import config_from_proto, ranking_from_proto
from services.rpc.server_runtime import relay_events
from services.rpc.version_rpcs import VersionRpcs, version_to_proto

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


class RewardServicer(VersionRpcs, reward_pb2_grpc.RewardServiceServicer):
    def __init__(self, service: RewardService):
        self.service = service

    async def Score(self, request, context):
        try:
            items = [ScoreItem(i.prompt, i.response) for i in request.items]
            members, version = await self.service.score_members(items, context.time_remaining(), request.version)
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        return reward_pb2.ScoreResponse(
            scores=[member_mean(m) for m in members], model_version=version, spreads=spreads_of(members)
        )

    async def Rank(self, request, context):
        try:
            result = await self.service.rank(
                request.prompt, list(request.candidates), context.time_remaining(), request.version
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        return reward_pb2.RankResponse(
            scores=result.scores,
            order=result.order,
            pairwise_probabilities=[p for row in result.probabilities for p in row],
            model_version=result.version,
            spreads=result.spreads,
        )

    async def Train(self, request, context):
        events: asyncio.Queue[reward_pb2.TrainEvent] = asyncio.Queue()
        stop = threading.Event()
        rankings = [ranking_from_proto(r) for r in request.rankings]
        config = config_from_proto(request.config, RewardTrainConfig())
        heldout = [ranking_from_proto(r) for r in request.heldout_rankings]

        def progress(p) -> None:
            events.put_nowait(
                reward_pb2.TrainEvent(
                    progress=reward_pb2.TrainProgress(
                        step=p.step,
                        total_steps=p.total_steps,
                        epoch=p.epoch,
                        loss=p.loss,
                        accuracy=p.accuracy,
                    )
                )
            )

        def evaluation(o) -> None:
            events.put_nowait(
                reward_pb2.TrainEvent(
                    evaluation=reward_pb2.TrainEvaluation(
                        heldout_accuracy=o.heldout_accuracy,
                        heldout_pairs=o.heldout_pairs,
                        heldout_prompts=o.heldout_prompts,
                        train_pairs=o.train_pairs,
                        train_prompts=o.train_prompts,
                    )
                )
            )

        # A cancelled call sets `stop`; training ends cleanly at the next step and writes nothing.
        task = asyncio.create_task(
            self.service.train(
                rankings, config, on_progress=progress, on_evaluation=evaluation, stop=stop, heldout_rankings=heldout
            )
        )
        try:
            async for event in relay_events(task, events):
                yield event
            version = task.result()
        except ServiceError as error:
            await context.abort(error.grpc_code, str(error))
        except asyncio.CancelledError:
            stop.set()
            raise
        yield reward_pb2.TrainEvent(version=version_to_proto(version, self.service.registry.active))

    async def GetInfo(self, request, context):
        c = self.service.config
        return reward_pb2.RewardInfo(
            active_version=self.service.registry.active,
            base_model=str(c.base_model),
            architecture=self.service.architecture,
            max_batch=c.max_batch,
            max_wait_ms=c.max_wait_ms,
            max_queue=c.max_queue,
            max_items_per_request=c.max_items_per_request,
            max_text_chars=c.max_text_chars,
            max_length_tokens=self.service.scorer.max_length,
            training=self.service.training,
            ensemble_size=self.service.scorer.members,
            serving_version=self.service.scorer.version,
            replica_id=self.service.replica_id,
        )
