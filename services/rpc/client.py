"""Client-side pieces every rlhf-loop client shares: channels, auth metadata, retries, readiness."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")  # a generated service stub

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# round_robin spreads calls over every address the target resolves to: the replicas behind a
# Kubernetes headless Service (`dns:///reward-headless.<ns>.svc:50051`), or a list such as
# `ipv4:10.0.0.1:50051,10.0.0.2:50051`. It skips a replica whose connection failed, so a call
# retried after UNAVAILABLE (RetryPolicy) goes to another one. gRPC's default, pick_first,
# would send everything to the first address. One address behaves as before.
LOAD_BALANCING = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.service_config", LOAD_BALANCING),
)

Metadata = tuple[tuple[str, str], ...]


def bearer_metadata(token: str | None) -> Metadata:
    """The call metadata that authenticates with `token`; none without a token."""
    return (("authorization", f"Bearer {token}"),) if token else ()


@dataclass(frozen=True)
class RetryPolicy:
    """Unary calls are retried with exponential backoff while the server is UNAVAILABLE, never otherwise."""

    retries: int = 3
    backoff_s: float = 0.2

    def delay_s(self, error: grpc.RpcError, attempt: int) -> float | None:
        """Seconds to wait after failed `attempt` (0-based) before the next one; None: give up and raise."""
        # UNAVAILABLE is gRPC's code for a passing condition (server starting, restarting, or gone)
        # that a retry may cure; any other code is the server's answer, and would come again.
        if error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
            return None
        return self.backoff_s * 2**attempt

    def run(self, call: Callable[[], T], target: str = "") -> T:
        """`call()`, retried under this policy (blocking sleeps)."""
        for attempt in itertools.count():
            try:
                return call()
            except grpc.RpcError as error:
                time.sleep(self._wait_s(error, attempt, target))

    async def run_async(self, call: Callable[[], Awaitable[T]], target: str = "") -> T:
        """`await call()`, retried under this policy (without blocking the event loop)."""
        for attempt in itertools.count():
            try:
                return await call()
            except grpc.RpcError as error:
                await asyncio.sleep(self._wait_s(error, attempt, target))

    def _wait_s(self, error: grpc.RpcError, attempt: int, target: str) -> float:
        """The backoff before the next attempt; re-raises `error` when there is to be none."""
        delay = self.delay_s(error, attempt)
        if delay is None:
            raise error
        log.warning("server unavailable, retrying", extra={"target": target, "delay_s": delay})
        return delay


NO_RETRY = RetryPolicy(retries=0)


def _credentials(tls_ca: Path | None) -> grpc.ChannelCredentials | None:
    return None if tls_ca is None else grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())


def open_aio_channel(target: str, tls_ca: Path | None = None) -> grpc.aio.Channel:
    """An asyncio channel (bound to the running loop), TLS when a CA certificate is given."""
    credentials = _credentials(tls_ca)
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


class GrpcClient:
    """A channel plus the call options (deadline, bearer token, retries on UNAVAILABLE)."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ):
        credentials = _credentials(tls_ca)
        if credentials is not None:
            self.channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.target = target
        self.metadata = bearer_metadata(token)
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(retries, backoff_s)

    def call(self, method: Callable[..., T], request, *, timeout_s: float | None = None, retry: bool = True) -> T:
        """Unary call with deadline and auth; retried with backoff while the server is UNAVAILABLE."""
        policy = self.retry if retry else NO_RETRY
        timeout = timeout_s or self.timeout_s
        return policy.run(lambda: method(request, timeout=timeout, metadata=self.metadata), self.target)

    def wait_ready(self, timeout_s: float = 60.0, service: str = "") -> None:
        """Block until health reports SERVING; raises TimeoutError otherwise."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.target} not SERVING after {timeout_s:.0f}s")
            time.sleep(0.2)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncGrpcClient(Generic[S]):
    """GrpcClient for asyncio: the same call options; the channel opens on first use, in the caller's loop."""

    def __init__(
        self,
        target: str,
        stub_type: Callable[[grpc.aio.Channel], S],
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ):
        self.target = target
        self.tls_ca = tls_ca
        self.metadata = bearer_metadata(token)
        self.timeout_s = timeout_s
        self.retry = RetryPolicy(retries, backoff_s)
        self._stub_type = stub_type
        self._channel: grpc.aio.Channel | None = None
        self._stub: S | None = None

    @property
    def stub(self) -> S:
        # A grpc.aio channel belongs to the event loop it was made in, which for TRL's reward
        # functions and aiohttp's handlers only exists once they run, not when the client is built.
        if self._stub is None:
            self._channel = open_aio_channel(self.target, self.tls_ca)
            self._stub = self._stub_type(self._channel)
        return self._stub

    async def call(
        self, method: Callable[..., Awaitable[T]], request, *, timeout_s: float | None = None, retry: bool = True
    ) -> T:
        """Unary call with deadline and auth; retried with backoff while the server is UNAVAILABLE."""
        policy = self.retry if retry else NO_RETRY
        timeout = timeout_s or self.timeout_s
        return await policy.run_async(lambda: method(request, timeout=timeout, metadata=self.metadata), self.target)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
