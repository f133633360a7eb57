"""`rlhf-loop bench reward`: serving throughput measured side by side in one run.

On the same model and the same mix of prompt/response lengths: direct forward
passes at batch 1, at each client count's batch and at the serving batch size,
and the real service under 1, 8 and 32 concurrent single-item clients with
dynamic batching on (adaptive wait, and the fixed wait it replaced) and off
(off = one forward per request, as OpenRLHF's reward server does); with
batching on, the same clients also call the HTTP APIs, one sample per request
as OpenRLHF's `/get_reward` and verl's `/classify` clients send it.

`--null-model` measures the serving path alone instead (reward_serving_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import aiohttp
import grpc
import psutil
import torch

from services.models.registry import ModelRegistry
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.scorer import RewardScorer, ScoreItem
from services.reward.service import VERSION_PREFIX
from services.tools.memory import peak_rss_bytes
from services.tools.progress import stderr_progress
from services.tools.service_process import ServiceProcess

TARGETS = {
    "grpc_vs_inprocess": 0.8,
    "batched_vs_unbatched": 2.0,
    "get_reward_vs_grpc_batched": 0.8,
    "classify_vs_grpc_batched": 0.8,
    # The adaptive wait must not add latency where the fixed one did (a lone client never fills a batch).
    "p50_fixed_vs_adaptive_at_1_client": 1.0,
    "service_peak_rss_gb": 1.5,
}
WAIT_CLIENTS = (1, 8, 32)
_progress = stderr_progress("bench reward")

_WORDS = [
    "the",
    "a",
    "answer",
    "question",
    "helpful",
    "model",
    "reward",
    "people",
    "think",
    "clear",
    "simple",
    "because",
    "example",
    "python",
    "data",
    "train",
    "learn",
    "explain",
    "why",
    "how",
    "what",
    "when",
    "good",
    "better",
    "best",
    "kind",
    "thanks",
    "please",
    "step",
    "first",
    "then",
    "finally",
]


def item_mix(n: int, seed: int = 0) -> list[ScoreItem]:
    """Prompts of 4-12 and responses of 4-40 words (~35 tokens with MiniLM's tokenizer)."""
    rng = random.Random(seed)
    return [
        ScoreItem(
            " ".join(rng.choices(_WORDS, k=rng.randint(4, 12))) + "?",
            " ".join(rng.choices(_WORDS, k=rng.randint(4, 40))) + ".",
        )
        for _ in range(n)
    ]


def _measure_inprocess(scorer: RewardScorer, items: list[ScoreItem], batch: int, seconds: float) -> float:
    scorer.score(items[:batch])  # warm-up
    done, start, cursor = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [items[(cursor + i) % len(items)] for i in range(batch)]
        scorer.score(chunk)
        cursor += batch
        done += batch
    return done / (time.perf_counter() - start)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its descendants (a service's companion processes)."""
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


async def _drive_clients(
    send: Callable[[int, int], Awaitable[bool]],
    clients: int,
    seconds: float,
    server_pid: int,
    items_per_request: int = 1,
) -> dict:
    """`clients` coroutines sending requests in a loop; `send(client, n)` sends request n, False on an error.

    Also the CPU time each scored item cost the server (all its processes) and
    this client process, over the measured window: on a machine whose cores
    the clients share, items/s is bounded by both.
    """
    latencies: list[float] = []
    errors = 0

    async def client(n: int, until: float, record: bool) -> None:
        nonlocal errors
        cursor = n
        while time.perf_counter() < until:
            sent = time.perf_counter()
            if not await send(n, cursor):
                errors += 1
            elif record:
                latencies.append(time.perf_counter() - sent)
            cursor += clients

    await asyncio.gather(*(client(n, time.perf_counter() + 1.0, False) for n in range(clients)))  # warm-up
    server_before, client_before = _cpu_seconds(server_pid), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(client(n, start + seconds, True) for n in range(clients)))
    elapsed = time.perf_counter() - start
    server_cpu, client_cpu = _cpu_seconds(server_pid) - server_before, time.process_time() - client_before
    ordered = sorted(latencies)
    scored = max(len(latencies) * items_per_request, 1)
    return {
        "items_per_s": len(latencies) * items_per_request / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "server_cpu_us_per_item": 1e6 * server_cpu / scored,
        "client_cpu_us_per_item": 1e6 * client_cpu / scored,
        "errors": errors,
    }


async def drive_grpc(
    service: ServiceProcess, items: list[ScoreItem], clients: int, seconds: float, items_per_request: int = 1
) -> dict:
    """Each client on a connection of its own (as separate trainer processes are), `items_per_request` per Score.

    Channels to one target share a connection unless told not to, and
    SO_REUSEPORT spreads connections, not requests, over serving processes.
    Requests are built before the clock starts: the clients' cost is not what
    is measured, and they share the cores with the service.
    """
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(service.target, options=options) for _ in range(clients)]
    stubs = [reward_pb2_grpc.RewardServiceStub(c) for c in channels]
    requests = [
        reward_pb2.ScoreRequest(
            items=[
                reward_pb2.ScoreItem(prompt=item.prompt, response=item.response)
                for item in (items[(start + i) % len(items)] for i in range(items_per_request))
            ]
        )
        for start in range(0, len(items), items_per_request)
    ]

    async def send(n: int, cursor: int) -> bool:
        try:
            await stubs[n].Score(requests[cursor % len(requests)], timeout=30)
        except grpc.aio.AioRpcError:
            return False
        return True

    try:
        return await _drive_clients(send, clients, seconds, service.process.pid, items_per_request)
    finally:
        for channel in channels:
            await channel.close()


def get_reward_body(item: ScoreItem) -> dict:
    """What OpenRLHF's remote reward model sends for one sample."""
    return {"query": [item.prompt + " " + item.response], "prompts": [item.prompt + " "], "labels": [""]}


def classify_body(item: ScoreItem) -> dict:
    """What verl's discriminative reward-model client sends for one sample."""
    return {"input": item.prompt + " " + item.response, "use_activation": False}


async def _drive_http(
    service: ServiceProcess,
    path: str,
    body_of: Callable[[ScoreItem], dict],
    items: list[ScoreItem],
    clients: int,
    seconds: float,
) -> dict:
    """Each client with its own keep-alive session, one sample per POST."""
    url = f"{service.http}{path}"
    sessions = [aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) for _ in range(clients)]

    async def send(n: int, cursor: int) -> bool:
        try:
            async with sessions[n].post(url, json=body_of(items[cursor % len(items)])) as reply:
                await reply.read()
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    try:
        return await _drive_clients(send, clients, seconds, service.process.pid)
    finally:
        for session in sessions:
            await session.close()


Drive = Callable[[ServiceProcess], Awaitable[dict]]


class RunningService:
    """`serve reward ARGS --processes N`; process i serves HTTP (and its own /metrics) on metrics_port + i."""

    def __init__(self, workdir: Path, name: str, args: list[str], processes: int = 1):
        self.process = ServiceProcess("reward", [*args, "--processes", str(processes)], workdir / f"reward-{name}.log")
        self.https = [f"http://127.0.0.1:{self.process.metrics_port + i}" for i in range(processes)]

    def wait_ready(self) -> None:
        self.process.wait_ready()
        for http in self.https[1:]:
            _wait_http(http, self.process)

    def measure(self, drive: Drive) -> dict:
        """One phase, with the items per forward pass in it alone (the histogram counts the whole run)."""
        items_before, batches_before = _batch_counts(self.https)
        result = asyncio.run(drive(self.process))
        items_after, batches_after = _batch_counts(self.https)
        result["mean_batch_size"] = (items_after - items_before) / max(batches_after - batches_before, 1)
        return result

    def peak_rss_gb(self) -> float:
        """The summed peak RSS of its processes."""
        root = psutil.Process(self.process.process.pid)
        return sum(peak_rss_bytes(p.pid) for p in [root, *root.children(recursive=True)]) / 2**30


@contextlib.contextmanager
def running_services(workdir: Path, configs: dict[str, tuple[list[str], int]]) -> Iterator[dict[str, RunningService]]:
    """Each configuration's service (name -> (args, processes)), all up at once so their phases can interleave.

    On a machine shared with other work, phases of one comparison measured
    back to back see the same load; an idle service costs next to nothing.
    """
    services = {name: RunningService(workdir, name, args, processes) for name, (args, processes) in configs.items()}
    try:
        for service in services.values():
            service.wait_ready()
        yield services
    finally:
        for service in services.values():
            service.process.stop()


def _wait_http(http: str, service: ServiceProcess, timeout_s: float = 120.0) -> None:
    """Until a companion process answers on its own HTTP port (it binds once its model is loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and service.process.poll() is None:
        try:
            urllib.request.urlopen(f"{http}/metrics", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{http} did not answer; log:\n{service.log()}")


def _batch_counts(https: Sequence[str]) -> tuple[float, float]:
    """(items, batches) so far, summed over the service's processes' rlhf_reward_batch_size histograms."""
    items = batches = 0.0
    for http in https:
        text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith("rlhf_reward_batch_size_sum"):
                items += float(line.split()[1])
            elif line.startswith("rlhf_reward_batch_size_count"):
                batches += float(line.split()[1])
    return items, batches


def round3(x: float) -> float:
    return round(x, 3)


def _summary(phase: dict) -> dict:
    return {
        "items_per_s": round3(phase["items_per_s"]),
        "p50_ms": round3(phase["p50_ms"]),
        "p99_ms": round3(phase["p99_ms"]),
        "mean_batch_size": round3(phase["mean_batch_size"]),
    }


def run_reward_benchmark(
    model: str = "minilm",
    clients: int = 32,
    seconds: float = 10.0,
    max_batch: int = 32,
    bucket_tokens: int = 512,
    max_wait_ms: float = 5.0,
    wait_clients: Sequence[int] = WAIT_CLIENTS,
    processes: int = 1,
) -> dict:
    items = item_mix(512)
    counts = sorted({1, *wait_clients, clients})  # 1: the low-load latency target
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-reward-") as tmp:
        workdir = Path(tmp)
        registry = workdir / "registry"
        common = {"--registry": registry, "--model": model, "--bucket-tokens": bucket_tokens}
        services = {
            "adaptive": {"--max-batch": max_batch, "--max-wait-ms": max_wait_ms, "--batch-wait": "adaptive"},
            "fixed": {"--max-batch": max_batch, "--max-wait-ms": max_wait_ms, "--batch-wait": "fixed"},
            "unbatched": {"--max-batch": 1, "--max-wait-ms": 0},
        }
        configs = {
            name: ([str(part) for option in {**common, **options}.items() for part in option], processes)
            for name, options in services.items()
        }
        measured: dict[str, dict[str, dict]] = {name: {} for name in services}
        inprocess: dict[int, float] = {}
        batches = sorted({1, max_batch, *(min(n, max_batch) for n in counts)})
        _progress(f"starting the {', '.join(services)} services")
        with running_services(workdir, configs) as running:
            # In process, on the very version the services serve (their base version), while they idle, and
            # again once they exited: others' work on a shared machine only ever slows a measurement down,
            # so the faster of the two is the limit.
            base = ModelRegistry(registry, VERSION_PREFIX).list()[0]
            scorer = RewardScorer.load(base.path, base.id, max_length=512)
            scorer.bucket_tokens = bucket_tokens
            if torch.cuda.is_available():
                scorer.model.to("cuda")
            for batch in batches:
                _progress(f"in-process batch {batch}")
                inprocess[batch] = _measure_inprocess(scorer, items, batch, seconds / 2)
            for n in counts:
                for name, service in running.items():
                    _progress(f"{name} service: gRPC, {n} clients ({seconds:.0f}s)")
                    measured[name][f"grpc_{n}"] = service.measure(
                        partial(drive_grpc, items=items, clients=n, seconds=seconds)
                    )
            for phase, path, body in (
                ("http_get_reward", "/get_reward", get_reward_body),
                ("http_classify", "/classify", classify_body),
            ):
                _progress(f"adaptive service: {path}, {clients} clients ({seconds:.0f}s)")
                measured["adaptive"][phase] = running["adaptive"].measure(
                    partial(_drive_http, path=path, body_of=body, items=items, clients=clients, seconds=seconds)
                )
            peak_rss = max(service.peak_rss_gb() for service in running.values())
        for batch in batches:
            _progress(f"in-process batch {batch}, again")
            inprocess[batch] = max(inprocess[batch], _measure_inprocess(scorer, items, batch, seconds / 2))

    adaptive, fixed, unbatched = measured["adaptive"], measured["fixed"], measured["unbatched"]
    phases = {
        "grpc_batched": adaptive[f"grpc_{clients}"],
        "grpc_batched_fixed_wait": fixed[f"grpc_{clients}"],
        "grpc_unbatched": unbatched[f"grpc_{clients}"],
        "http_get_reward": adaptive["http_get_reward"],
        "http_classify": adaptive["http_classify"],
    }
    grpc_batched = phases["grpc_batched"]["items_per_s"]
    ratios = {
        "grpc_vs_inprocess": grpc_batched / inprocess[max_batch],
        "batched_vs_unbatched": grpc_batched / phases["grpc_unbatched"]["items_per_s"],
        "get_reward_vs_grpc_batched": phases["http_get_reward"]["items_per_s"] / grpc_batched,
        "classify_vs_grpc_batched": phases["http_classify"]["items_per_s"] / grpc_batched,
        "adaptive_vs_fixed_wait": grpc_batched / phases["grpc_batched_fixed_wait"]["items_per_s"],
        "p50_fixed_vs_adaptive_at_1_client": fixed["grpc_1"]["p50_ms"] / adaptive["grpc_1"]["p50_ms"],
    }
    # Before (fixed) and after (adaptive) at each load; in process, the batch that load can fill at best.
    batch_wait = {}
    for n in counts:
        best_inprocess = inprocess[min(n, max_batch)]
        batch_wait[str(n)] = {
            "inprocess_items_per_s": round3(best_inprocess),
            "unbatched": _summary(unbatched[f"grpc_{n}"]),
            **{
                policy: {
                    **_summary(measured[policy][f"grpc_{n}"]),
                    "grpc_vs_inprocess": round3(measured[policy][f"grpc_{n}"]["items_per_s"] / best_inprocess),
                    "batched_vs_unbatched": round3(
                        measured[policy][f"grpc_{n}"]["items_per_s"] / unbatched[f"grpc_{n}"]["items_per_s"]
                    ),
                }
                for policy in ("fixed", "adaptive")
            },
        }
    met = {name: round3(ratios[name]) >= target for name, target in TARGETS.items() if name in ratios}
    met["service_peak_rss_gb"] = peak_rss < TARGETS["service_peak_rss_gb"]
    return {
        "benchmark": "reward",
        "model": model,
        "architecture": scorer.model.config.model_type,
        "clients": clients,
        "serving_processes": processes,
        "max_batch": max_batch,
        "bucket_tokens": bucket_tokens,
        "max_wait_ms": max_wait_ms,
        "batch_wait_policy": "adaptive",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "seconds_per_phase": seconds,
        "mean_tokens_per_item": round3(statistics.mean(len(scorer.encode(i)) for i in items)),
        "items_per_s": {
            "inprocess_batch1": round3(inprocess[1]),
            "inprocess_batched": round3(inprocess[max_batch]),
            **{name: round3(phase["items_per_s"]) for name, phase in phases.items()},
        },
        "latency_ms": {
            name: {"p50": round3(phase["p50_ms"]), "p99": round3(phase["p99_ms"])} for name, phase in phases.items()
        },
        "mean_batch_size": {name: round3(phase["mean_batch_size"]) for name, phase in phases.items()},
        "batch_wait": batch_wait,
        "errors": sum(phase["errors"] for runs in measured.values() for phase in runs.values()),
        "service_peak_rss_gb": round3(peak_rss),
        "ratios": {k: round3(v) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": all(met.values()),
        "target_results": met,
    }
