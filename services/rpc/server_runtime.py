"""What every rlhf-loop gRPC service shares: auth, request metrics, health, reflection, TLS, shutdown.

The servers are grpc.aio: the dynamic batcher is an asyncio queue in the same
event loop as the handlers, so merging concurrent requests costs no thread
hand-offs, and the /metrics (and other HTTP) endpoints run in that loop too.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

log = logging.getLogger(__name__)
disable_created_metrics()  # `_created` series are noise to Prometheus; every part that serves /metrics imports this

HEALTH_PREFIX = "/grpc.health.v1.Health/"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class CompanionExitedError(RuntimeError):
    """A process serving the same port exited without being asked to; the others were stopped with it."""


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9464
    auth_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    grace_seconds: float = 10.0


def _rewrap(handler: grpc.RpcMethodHandler, unary, streaming) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped (unary responses by `unary`, streams by `streaming`)."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **kwargs)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every RPC but health without `authorization: Bearer <token>` (UNAUTHENTICATED)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_PREFIX):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = str(metadata.get("authorization", "")).encode()
        if hmac.compare_digest(presented, self._expected):
            return await continuation(handler_call_details)

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        return grpc.unary_unary_rpc_method_handler(refuse)


class RequestMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts requests by method and status code and times them (`<prefix>_requests_total`, ..._seconds)."""

    def __init__(self, registry: CollectorRegistry, prefix: str):
        self.requests = Counter(
            f"{prefix}_requests_total",
            "gRPC requests by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            "gRPC request latency",
            ["method"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        # method -> (the servicer's handler, it wrapped): handlers are the same objects on every call, so
        # each is wrapped once, not per request. Only registered methods get here, so the dict stays small.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        cached = self._wrapped.get(handler_call_details.method)
        if cached is None or cached[0] is not handler:
            cached = handler, self._wrap(handler, handler_call_details.method.rsplit("/", 1)[-1])
            self._wrapped[handler_call_details.method] = cached
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        latency = self.latency.labels(method)

        def record(context, started: float, error: BaseException | None) -> None:
            if isinstance(error, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED
            elif error is not None and context.code() is None:
                code = grpc.StatusCode.UNKNOWN
            else:
                code = context.code() or grpc.StatusCode.OK
            self.requests.labels(method, code.name if isinstance(code, grpc.StatusCode) else str(code)).inc()
            latency.observe(time.perf_counter() - started)

        def unary(behaviour):
            async def wrapped(request, context):
                started, error = time.perf_counter(), None
                try:
                    return await behaviour(request, context)
                except BaseException as e:
                    error = e
                    raise
                finally:
                    record(context, started, error)

            return wrapped

        def streaming(behaviour):
            async def wrapped(request, context):
                started, error = time.perf_counter(), None
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as e:
                    error = e
                    raise
                finally:
                    record(context, started, error)

            return wrapped

        return _rewrap(handler, unary, streaming)


async def relay_events(task: asyncio.Task, events: asyncio.Queue) -> AsyncIterator:
    """What a long job (`task`) puts on `events` while it runs, then whatever is left once it ends.

    Streaming RPCs run their job as a separate task so that a cancelled call
    can tell the job to stop cleanly instead of killing it mid-write.
    """
    while not task.done() or not events.empty():
        getter = asyncio.ensure_future(events.get())
        await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield getter.result()
        else:
            getter.cancel()


def metrics_route(registry: CollectorRegistry) -> web.RouteDef:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", metrics)


def spawn_companions(count: int, target: Callable[[int], None]) -> list[BaseProcess]:
    """Run `target(1)` ... `target(count)`, each in a fresh process that dies with this one.

    gRPC servers bind with SO_REUSEPORT, so companions that serve the same
    port share its connections: the kernel spreads new connections over them.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy gRPC's and torch's threads' state
    companions = [
        context.Process(target=_run_companion, args=(target, index), name=f"companion-{index}")
        for index in range(1, count + 1)
    ]
    for companion in companions:
        companion.start()
    return companions


def _run_companion(target: Callable[[int], None], index: int) -> None:
    if sys.platform.startswith("linux"):
        # A parent killed outright cannot forward its SIGTERM: have the kernel send it, so no orphan keeps the port.
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    target(index)


async def serve(
    settings: ServerSettings,
    *,
    register: Callable[[grpc.aio.Server], list[str]],
    metrics_registry: CollectorRegistry,
    metrics_prefix: str,
    http_routes: list[web.RouteDef] = (),
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    companions: Sequence[BaseProcess] = (),
) -> None:
    """Run a gRPC server and its HTTP side (metrics + `http_routes`) until SIGTERM/SIGINT.

    `register(server)` adds the servicers and returns their full service names.
    On a signal, health turns NOT_SERVING first so load balancers stop sending
    work, then in-flight calls get `grace_seconds` to finish. `companions`
    (from spawn_companions) get the signal too and are waited for; one that
    exits on its own stops this process as well (CompanionExitedError), so an
    orchestrator restarts the whole group rather than serving on with fewer.
    """
    interceptors: list[grpc.aio.ServerInterceptor] = [RequestMetricsInterceptor(metrics_registry, metrics_prefix)]
    if settings.auth_token:
        interceptors.insert(0, BearerTokenInterceptor(settings.auth_token))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    names = register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert and settings.tls_key:
        credentials = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)

    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app.add_routes([metrics_route(metrics_registry), *http_routes])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.metrics_port)

    if on_start:
        await on_start()
    await server.start()
    await site.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        extra={
            "grpc": f"{settings.host}:{port}",
            "http": f"{settings.host}:{settings.metrics_port}",
            "tls": bool(settings.tls_cert),
            "auth": bool(settings.auth_token),
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exited: list[BaseProcess] = []

    def on_exit(companion: BaseProcess) -> None:
        loop.remove_reader(companion.sentinel)
        exited.append(companion)
        stop.set()

    for companion in companions:
        loop.add_reader(companion.sentinel, on_exit, companion)  # readable once the process has exited
    await stop.wait()
    for companion in companions:
        loop.remove_reader(companion.sentinel)
        companion.terminate()  # SIGTERM: each shuts down gracefully, as this one does
    log.info("shutting down", extra={"grace_seconds": settings.grace_seconds})
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_seconds)
    await runner.cleanup()
    if on_stop:
        await on_stop()
    for companion in companions:
        await asyncio.to_thread(companion.join, settings.grace_seconds + 30)  # its grace, then its model's cleanup
        if companion.is_alive():
            companion.kill()
    if exited:  # their exit codes are known once joined, not yet when their sentinels turned readable
        raise CompanionExitedError(
            ", ".join(f"{c.name} (pid {c.pid}) exited with code {c.exitcode}" for c in exited)
            + "; the other serving processes were stopped"
        )
    log.info("stopped")
