import asyncio
import json
import re
import time
from pathlib import Path

import grpc
import pytest

from services.core.errors import ServiceError
from services.policy.remote_reward import RemoteReward, RewardServiceUnavailableError
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.client import AsyncRewardClient, RewardClient
from services.rpc.client import CHANNEL_OPTIONS, RetryPolicy, bearer_metadata
from services.tools.service_process import free_port
from tests.fixtures.recording_reward_server import serving


def test_unavailable_is_retried_with_backoff_then_raised():
    with RewardClient(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.1, timeout_s=2) as client:
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            client.info()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - began >= 0.1 + 0.2  # two backoffs: 0.1 s, then 0.2 s


def test_rollback_is_not_retried_but_promote_is():
    """Rolling back twice would go back two versions; promoting the active version again changes nothing."""
    with RewardClient(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.5, timeout_s=2) as client:
        began = time.monotonic()
        with pytest.raises(grpc.RpcError):
            client.rollback()
        assert time.monotonic() - began < 0.5
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            client.promote("reward-0002")
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began >= 0.5 + 1.0


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class Flaky:
    """Fails with `code` `failures` times, then answers "ok"; counts its calls."""

    def __init__(self, code: grpc.StatusCode, failures: int):
        self.code, self.failures, self.calls = code, failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Failure(self.code)
        return "ok"

    async def call_async(self) -> str:
        return self()


def test_retry_policy_retries_unavailable_until_it_answers():
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=2)
    assert RetryPolicy(retries=2, backoff_s=0.001).run(flaky) == "ok"
    assert flaky.calls == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED])
def test_retry_policy_does_not_retry_other_codes(code):
    flaky = Flaky(code, failures=1)
    with pytest.raises(Failure):
        RetryPolicy(retries=5, backoff_s=0.001).run(flaky)
    assert flaky.calls == 1


def test_retry_policy_gives_up_after_its_retries():
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=10)
    with pytest.raises(Failure):
        RetryPolicy(retries=3, backoff_s=0.001).run(flaky)
    assert flaky.calls == 4


def test_retry_policy_backs_off_exponentially():
    policy = RetryPolicy(retries=3, backoff_s=0.5)
    unavailable = Failure(grpc.StatusCode.UNAVAILABLE)
    assert [policy.delay_s(unavailable, attempt) for attempt in range(4)] == [0.5, 1.0, 2.0, None]


async def test_async_calls_share_the_retry_policy():
    flaky = Flaky(grpc.StatusCode.UNAVAILABLE, failures=2)
    assert await RetryPolicy(retries=2, backoff_s=0.001).run_async(flaky.call_async) == "ok"
    assert flaky.calls == 3
    refused = Flaky(grpc.StatusCode.INVALID_ARGUMENT, failures=1)
    with pytest.raises(Failure):
        await RetryPolicy(retries=2, backoff_s=0.001).run_async(refused.call_async)
    assert refused.calls == 1


def test_bearer_header_only_with_a_token():
    assert bearer_metadata("s3cret") == (("authorization", "Bearer s3cret"),)
    assert bearer_metadata(None) == bearer_metadata("") == ()


class Recording(reward_pb2_grpc.RewardServiceServicer):
    """A reward service that records the metadata it is sent; Score refuses empty text."""

    def __init__(self):
        self.metadata: list[dict[str, str]] = []

    def GetInfo(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        return reward_pb2.RewardInfo(active_version="reward-0001")

    def Score(self, request, context):
        if not all(item.response for item in request.items):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty response")
        return reward_pb2.ScoreResponse(scores=[float(len(i.response)) for i in request.items], model_version="r1")

    def Rank(self, request, context):
        # An order and probabilities that do not follow from the scores: clients must pass them on as sent.
        return reward_pb2.RankResponse(
            scores=[0.0, 1.0], order=[0, 1], pairwise_probabilities=[0.5, 0.75, 0.25, 0.5], model_version="r1"
        )


@pytest.fixture
def recording():
    servicer = Recording()
    with serving(servicer) as target:
        yield servicer, target


def test_sync_and_async_clients_send_the_same_bearer_header(recording):
    servicer, target = recording
    with RewardClient(target, token="t0k") as client:
        client.info()

    async def async_info():
        async with AsyncRewardClient(target, token="t0k") as client:
            await client.info()
        async with AsyncRewardClient(target) as anonymous:
            await anonymous.info()

    asyncio.run(async_info())
    assert [m.get("authorization") for m in servicer.metadata] == ["Bearer t0k", "Bearer t0k", None]


async def test_both_clients_return_the_rank_reply_as_sent(recording):
    _, target = recording
    with RewardClient(target) as client:
        blocking = client.rank("p", ["a", "b"])
    async with AsyncRewardClient(target) as client:
        awaited = await client.rank("p", ["a", "b"])
    assert blocking == awaited
    assert (awaited.order, awaited.probabilities, awaited.version) == ([0, 1], [[0.5, 0.75], [0.25, 0.5]], "r1")


async def test_remote_reward_scores_and_maps_refusals_to_service_errors(recording):
    _, target = recording
    reward = RemoteReward(target, retries=5, backoff_s=1.0)
    assert await reward.score(["p", "p"], ["abc", "de"]) == [3.0, 2.0]
    assert reward.versions == {"r1"}
    began = time.monotonic()
    with pytest.raises(ServiceError, match="INVALID_ARGUMENT") as refused:
        await reward.score(["p"], [""])
    assert not isinstance(refused.value, RewardServiceUnavailableError)
    assert time.monotonic() - began < 1.0  # a refusal is not retried


async def test_remote_reward_gives_up_on_an_unavailable_service():
    reward = RemoteReward(f"127.0.0.1:{free_port()}", timeout_s=2, retries=1, backoff_s=0.05)
    with pytest.raises(RewardServiceUnavailableError, match="after 2 attempts"):
        await reward.score(["p"], ["text"])


def test_every_client_channel_balances_round_robin_over_the_targets_addresses():
    """Channels are made in one place, with round_robin, so every client of the services spreads over replicas.

    The benchmarks (services/tools) measure one server on purpose and make their own.
    """
    root = Path(__file__).resolve().parents[2]
    makers = {
        path.relative_to(root).as_posix()
        for package in ("services", "labelstudio_backend")
        for path in (root / package).rglob("*.py")
        if re.search(r"\b(insecure|secure)_channel\(", path.read_text())
    }
    assert {m for m in makers if not m.startswith("services/tools/")} == {"services/rpc/client.py"}
    config = json.loads(dict(CHANNEL_OPTIONS)["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
