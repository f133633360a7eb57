"""Typed Python clients of the reward service: RewardClient (blocking) and AsyncRewardClient (grpc.aio)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from services.core.rankings import Ranking
from services.proto.rlhf.v1 import common_pb2, reward_pb2, reward_pb2_grpc
from services.reward.ranking import RankResult
from services.rpc.client import AsyncGrpcClient, GrpcClient
from services.rpc.proto_convert import ranking_to_proto
from services.rpc.version_rpcs import VersionCalls


def score_request(items: Sequence[tuple[str, str]], version: str = "") -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(
        items=[reward_pb2.ScoreItem(prompt=p, response=r) for p, r in items], version=version
    )


def rank_request(prompt: str, candidates: Sequence[str], version: str = "") -> reward_pb2.RankRequest:
    return reward_pb2.RankRequest(prompt=prompt, candidates=list(candidates), version=version)


def score_result(reply: reward_pb2.ScoreResponse) -> tuple[list[float], str]:
    """(one score per item, the model version that produced them)."""
    return list(reply.scores), reply.model_version


def spread_result(reply: reward_pb2.ScoreResponse) -> tuple[list[float], list[float], str]:
    """(scores, an ensemble's spread per item -- empty for a single model, the version)."""
    return list(reply.scores), list(reply.spreads), reply.model_version


def rank_result(reply: reward_pb2.RankResponse) -> RankResult:
    """The Rank reply as the service computed it: its order, and its K*K probabilities as rows."""
    k = len(reply.scores)
    probabilities = [list(reply.pairwise_probabilities[i * k : (i + 1) * k]) for i in range(k)]
    return RankResult(list(reply.scores), list(reply.order), probabilities, reply.model_version, list(reply.spreads))


class RewardClient(VersionCalls, GrpcClient):
    """`RewardClient("127.0.0.1:50051").score([("prompt", "response")])`."""

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        self.stub = reward_pb2_grpc.RewardServiceStub(self.channel)

    def score(
        self, items: Sequence[tuple[str, str]], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[float], str]:
        """One score per (prompt, response) item, and the model version that produced them (default: active)."""
        return score_result(self.call(self.stub.Score, score_request(items, version), timeout_s=timeout_s))

    def score_with_spread(
        self, items: Sequence[tuple[str, str]], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[float], list[float], str]:
        """Scores, an ensemble's spread per item (empty for a single model), and the version."""
        return spread_result(self.call(self.stub.Score, score_request(items, version), timeout_s=timeout_s))

    def rank(
        self, prompt: str, candidates: Sequence[str], timeout_s: float | None = None, version: str = ""
    ) -> RankResult:
        request = rank_request(prompt, candidates, version)
        return rank_result(self.call(self.stub.Rank, request, timeout_s=timeout_s))

    def train(
        self,
        rankings: Sequence[Ranking],
        timeout_s: float | None = None,
        heldout_rankings: Sequence[Ranking] = (),
        **config,
    ) -> Iterator[reward_pb2.TrainEvent]:
        """Stream of progress events, then the evaluation, then the new version. Not retried."""
        request = reward_pb2.TrainRequest(
            rankings=[ranking_to_proto(r) for r in rankings],
            config=reward_pb2.TrainConfig(**config),
            heldout_rankings=[ranking_to_proto(r) for r in heldout_rankings],
        )
        return self.stub.Train(request, timeout=timeout_s, metadata=self.metadata)

    def info(self) -> reward_pb2.RewardInfo:
        return self.call(self.stub.GetInfo, reward_pb2.GetInfoRequest())


class AsyncRewardClient(AsyncGrpcClient[reward_pb2_grpc.RewardServiceStub]):
    """`await AsyncRewardClient("127.0.0.1:50051").score([("prompt", "response")])`, inside a running loop."""

    def __init__(self, target: str, **options):
        super().__init__(target, reward_pb2_grpc.RewardServiceStub, **options)

    async def score(
        self, items: Sequence[tuple[str, str]], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[float], str]:
        """One score per (prompt, response) item, and the model version that produced them (default: active)."""
        return score_result(await self.call(self.stub.Score, score_request(items, version), timeout_s=timeout_s))

    async def score_with_spread(
        self, items: Sequence[tuple[str, str]], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[float], list[float], str]:
        """Scores, an ensemble's spread per item (empty for a single model), and the version."""
        return spread_result(await self.call(self.stub.Score, score_request(items, version), timeout_s=timeout_s))

    async def rank(
        self, prompt: str, candidates: Sequence[str], timeout_s: float | None = None, version: str = ""
    ) -> RankResult:
        request = rank_request(prompt, candidates, version)
        return rank_result(await self.call(self.stub.Rank, request, timeout_s=timeout_s))

    async def info(self, timeout_s: float | None = None) -> reward_pb2.RewardInfo:
        return await self.call(self.stub.GetInfo, reward_pb2.GetInfoRequest(), timeout_s=timeout_s)

    async def list_versions(self, timeout_s: float | None = None) -> common_pb2.ListVersionsResponse:
        return await self.call(self.stub.ListVersions, common_pb2.ListVersionsRequest(), timeout_s=timeout_s)
