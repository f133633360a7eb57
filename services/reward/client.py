"""Typed Python client of the reward service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from services.core.rankings import Ranking
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.ranking import RankResult
from services.rpc.client import GrpcClient
from services.rpc.proto_convert import ranking_to_proto
from services.rpc.version_rpcs import VersionCalls


class RewardClient(VersionCalls, GrpcClient):
    """`RewardClient("127.0.0.1:50051").score([("prompt", "response")])`."""

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        self.stub = reward_pb2_grpc.RewardServiceStub(self.channel)

    def score(self, items: Sequence[tuple[str, str]], timeout_s: float | None = None) -> tuple[list[float], str]:
        """One score per (prompt, response) item, and the model version that produced them."""
        request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(prompt=p, response=r) for p, r in items])
        reply = self.call(self.stub.Score, request, timeout_s=timeout_s)
        return list(reply.scores), reply.model_version

    def rank(self, prompt: str, candidates: Sequence[str], timeout_s: float | None = None) -> RankResult:
        reply = self.call(
            self.stub.Rank,
            reward_pb2.RankRequest(prompt=prompt, candidates=list(candidates)),
            timeout_s=timeout_s,
        )
        k = len(reply.scores)
        probabilities = [list(reply.pairwise_probabilities[i * k : (i + 1) * k]) for i in range(k)]
        return RankResult(list(reply.scores), list(reply.order), probabilities, reply.model_version)

    def train(
        self, rankings: Sequence[Ranking], timeout_s: float | None = None, **config
    ) -> Iterator[reward_pb2.TrainEvent]:
        """Stream of progress events, then the evaluation, then the new version. Not retried."""
        request = reward_pb2.TrainRequest(
            rankings=[ranking_to_proto(r) for r in rankings], config=reward_pb2.TrainConfig(**config)
        )
        return self.stub.Train(request, timeout=timeout_s, metadata=self.metadata)

    def info(self) -> reward_pb2.RewardInfo:
        return self.call(self.stub.GetInfo, reward_pb2.GetInfoRequest())
