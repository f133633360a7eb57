"""Typed Python client of the policy service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from services.core.rankings import Ranking
from services.proto.rlhf.v1 import policy_pb2, policy_pb2_grpc
from services.rpc.client import GrpcClient
from services.rpc.proto_convert import ranking_to_proto
from services.rpc.version_rpcs import VersionCalls


def sampling(**params) -> policy_pb2.SamplingParams:
    """SamplingParams from keyword arguments (temperature, top_p, max_new_tokens, seed); None means default."""
    return policy_pb2.SamplingParams(**{k: v for k, v in params.items() if v is not None})


class PolicyClient(VersionCalls, GrpcClient):
    """`PolicyClient("127.0.0.1:50052").generate(["prompt"], n=4, temperature=0.8, seed=1)`."""

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        self.stub = policy_pb2_grpc.PolicyServiceStub(self.channel)

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        *,
        version: str = "",
        timeout_s: float | None = None,
        **sampling_params,
    ) -> policy_pb2.GenerateResponse:
        request = policy_pb2.GenerateRequest(
            prompts=list(prompts), n=n, sampling=sampling(**sampling_params), version=version
        )
        return self.call(self.stub.Generate, request, timeout_s=timeout_s)

    def generate_texts(
        self, prompts: Sequence[str], n: int = 1, *, version: str = "", **sampling_params
    ) -> tuple[list[list[str]], str]:
        """(completion texts per prompt, the version that wrote them) for any number of prompts.

        Splits the prompts into Generate calls of the server's max_prompts.
        """
        chunk = self.info().max_prompts
        texts: list[list[str]] = []
        served_by = version
        for start in range(0, len(prompts), chunk):
            reply = self.generate(prompts[start : start + chunk], n, version=version, **sampling_params)
            texts += [[c.text for c in row.completions] for row in reply.results]
            served_by = reply.version
        return texts, served_by

    def train(
        self,
        *,
        prompts: Sequence[str] = (),
        rankings: Sequence[Ranking] = (),
        timeout_s: float | None = None,
        **config,
    ) -> Iterator[policy_pb2.PolicyTrainEvent]:
        """Progress events, then the new version. Not retried: call again to resume from a checkpoint."""
        request = policy_pb2.PolicyTrainRequest(
            prompts=list(prompts),
            rankings=[ranking_to_proto(r) for r in rankings],
            config=policy_pb2.PolicyTrainConfig(**config),
        )
        return self.stub.Train(request, timeout=timeout_s, metadata=self.metadata)

    def evaluate(
        self,
        candidate: str,
        prompts: Sequence[str],
        *,
        baseline: str = "",
        timeout_s: float | None = None,
        **sampling_params,
    ) -> policy_pb2.EvaluateResponse:
        request = policy_pb2.EvaluateRequest(
            candidate=candidate, baseline=baseline, prompts=list(prompts), sampling=sampling(**sampling_params)
        )
        return self.call(self.stub.Evaluate, request, timeout_s=timeout_s)

    def info(self) -> policy_pb2.PolicyInfo:
        return self.call(self.stub.GetInfo, policy_pb2.GetPolicyInfoRequest())
