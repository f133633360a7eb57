"""Client-side pieces every rlhf-loop client shares: channels, auth metadata, retries, readiness."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def open_aio_channel(target: str, tls_ca: Path | None = None) -> grpc.aio.Channel:
    """An asyncio channel (bound to the running loop), TLS when a CA certificate is given."""
    if tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        return grpc.aio.secure_channel(target, credentials)
    return grpc.aio.insecure_channel(target)


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
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def call(self, method: Callable[..., T], request, *, timeout_s: float | None = None, retry: bool = True) -> T:
        """Unary call with deadline and auth; retried with backoff while the server is UNAVAILABLE."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return method(request, timeout=timeout_s or self.timeout_s, metadata=self.metadata)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                    raise
                delay = self.backoff_s * 2**attempt
                log.warning("server unavailable, retrying", extra={"target": self.target, "delay_s": delay})
                time.sleep(delay)
        raise AssertionError("unreachable")

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
