import time

import grpc
import pytest

from services.reward.client import RewardClient
from services.tools.service_process import free_port


def test_unavailable_is_retried_with_backoff_then_raised():
    with RewardClient(f"127.0.0.1:{free_port()}", retries=2, timeout_s=2) as client:
        client.backoff_s = 0.1
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            client.info()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - began >= 0.1 + 0.2  # two backoffs: 0.1 s, then 0.2 s


def test_promote_is_not_retried():
    with RewardClient(f"127.0.0.1:{free_port()}", retries=5, timeout_s=2) as client:
        client.backoff_s = 1.0
        began = time.monotonic()
        with pytest.raises(grpc.RpcError):
            client.promote("reward-0002")
    assert time.monotonic() - began < 1.0
