"""`rlhf-loop bench reward`: serving throughput measured side by side in one run.

Six measurements on the same model and the same mix of prompt/response
lengths: direct forward passes at batch 1 and at the serving batch size, and
the real service under concurrent single-item clients with dynamic batching
on and off (off = one forward per request, as OpenRLHF's reward server does);
with batching on, the same clients also call the HTTP APIs, one sample per
request as OpenRLHF's `/get_reward` and verl's `/classify` clients send it.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import aiohttp
import grpc
import torch

from services.models.registry import ModelRegistry
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.scorer import RewardScorer, ScoreItem
from services.reward.service import VERSION_PREFIX
from services.tools.progress import stderr_progress
from services.tools.service_process import ServiceProcess

TARGETS = {
    "grpc_vs_inprocess": 0.8,
    "batched_vs_unbatched": 2.0,
    "get_reward_vs_grpc_batched": 0.8,
    "classify_vs_grpc_batched": 0.8,
    "service_peak_rss_gb": 1.5,
}
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


async def _drive_clients(
    send: Callable[[int, ScoreItem], Awaitable[bool]], items: list[ScoreItem], clients: int, seconds: float
) -> dict:
    """`clients` coroutines sending one item per request in a loop; `send(client, item)` is False on an error."""
    latencies: list[float] = []
    errors = 0

    async def client(n: int, until: float, record: bool) -> None:
        nonlocal errors
        cursor = n
        while time.perf_counter() < until:
            item = items[cursor % len(items)]
            cursor += clients
            sent = time.perf_counter()
            if not await send(n, item):
                errors += 1
            elif record:
                latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(client(n, time.perf_counter() + 1.0, False) for n in range(clients)))  # warm-up
    start = time.perf_counter()
    await asyncio.gather(*(client(n, start + seconds, True) for n in range(clients)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "items_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "errors": errors,
    }


async def _drive_grpc(target: str, items: list[ScoreItem], clients: int, seconds: float) -> dict:
    """Each client with its own channel, one item per Score request."""
    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
    stubs = [reward_pb2_grpc.RewardServiceStub(c) for c in channels]

    async def send(n: int, item: ScoreItem) -> bool:
        request = reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(prompt=item.prompt, response=item.response)])
        try:
            await stubs[n].Score(request, timeout=30)
        except grpc.aio.AioRpcError:
            return False
        return True

    try:
        return await _drive_clients(send, items, clients, seconds)
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
    url: str, body_of: Callable[[ScoreItem], dict], items: list[ScoreItem], clients: int, seconds: float
) -> dict:
    """Each client with its own keep-alive session, one sample per POST."""
    sessions = [aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) for _ in range(clients)]

    async def send(n: int, item: ScoreItem) -> bool:
        try:
            async with sessions[n].post(url, json=body_of(item)) as reply:
                await reply.read()
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    try:
        return await _drive_clients(send, items, clients, seconds)
    finally:
        for session in sessions:
            await session.close()


def _measure_service(
    workdir: Path,
    registry: Path,
    model: str,
    items: list[ScoreItem],
    clients: int,
    seconds: float,
    max_batch: int,
    bucket_tokens: int,
    max_wait_ms: float,
    with_http: bool,
) -> tuple[dict[str, dict], float]:
    """Start the real service with this batching, drive it (gRPC, then the HTTP APIs), read its peak RSS in GB."""
    options = {
        "--registry": registry,
        "--model": model,
        "--max-batch": max_batch,
        "--max-wait-ms": max_wait_ms if max_batch > 1 else 0,
        "--bucket-tokens": bucket_tokens,
    }
    service = ServiceProcess(
        "reward",
        [str(part) for option in options.items() for part in option],
        workdir / f"reward-batch{max_batch}.log",
    )
    drives = {"grpc": partial(_drive_grpc, service.target)}
    if with_http:
        drives["http_get_reward"] = partial(_drive_http, f"{service.http}/get_reward", get_reward_body)
        drives["http_classify"] = partial(_drive_http, f"{service.http}/classify", classify_body)
    results = {}
    try:
        service.wait_ready()
        for name, drive in drives.items():
            items_before, batches_before = _batch_counts(service.http)
            results[name] = asyncio.run(drive(items, clients, seconds))
            items_after, batches_after = _batch_counts(service.http)
            # Items per forward in this phase alone (the histogram counts the whole run).
            results[name]["mean_batch_size"] = (items_after - items_before) / max(batches_after - batches_before, 1)
        peak_rss_gb = service.peak_rss_bytes() / 2**30
    finally:
        service.stop()
    return results, peak_rss_gb


def _batch_counts(http: str) -> tuple[float, float]:
    """(items, batches) so far from the service's own rlhf_reward_batch_size histogram."""
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("rlhf_reward_batch_size_sum", "rlhf_reward_batch_size_count"))
    }
    return values["rlhf_reward_batch_size_sum"], values["rlhf_reward_batch_size_count"]


def round3(x: float) -> float:
    return round(x, 3)


def run_reward_benchmark(
    model: str = "minilm",
    clients: int = 32,
    seconds: float = 10.0,
    max_batch: int = 32,
    bucket_tokens: int = 512,
    max_wait_ms: float = 5.0,
) -> dict:
    items = item_mix(512)
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-reward-") as tmp:
        workdir = Path(tmp)
        registry = workdir / "registry"
        _progress(f"batched service: gRPC, /get_reward, /classify ({clients} clients, {seconds:.0f}s each)")
        batched, batched_rss = _measure_service(
            workdir, registry, model, items, clients, seconds, max_batch, bucket_tokens, max_wait_ms, with_http=True
        )
        _progress("unbatched service (one forward per request)")
        unbatched, unbatched_rss = _measure_service(
            workdir, registry, model, items, clients, seconds, 1, bucket_tokens, max_wait_ms, with_http=False
        )
        # In process, on the very version the service served (its base version), after the service exited.
        base = ModelRegistry(registry, VERSION_PREFIX).list()[0]
        scorer = RewardScorer.load(base.path, base.id, max_length=512)
        scorer.bucket_tokens = bucket_tokens
        if torch.cuda.is_available():
            scorer.model.to("cuda")
        _progress("in-process batch 1")
        batch1 = _measure_inprocess(scorer, items, 1, seconds)
        _progress(f"in-process batch {max_batch}")
        batched_inprocess = _measure_inprocess(scorer, items, max_batch, seconds)

    phases = {
        "grpc_batched": batched["grpc"],
        "grpc_unbatched": unbatched["grpc"],
        "http_get_reward": batched["http_get_reward"],
        "http_classify": batched["http_classify"],
    }
    grpc_batched = phases["grpc_batched"]["items_per_s"]
    ratios = {
        "grpc_vs_inprocess": grpc_batched / batched_inprocess,
        "batched_vs_unbatched": grpc_batched / phases["grpc_unbatched"]["items_per_s"],
        "get_reward_vs_grpc_batched": phases["http_get_reward"]["items_per_s"] / grpc_batched,
        "classify_vs_grpc_batched": phases["http_classify"]["items_per_s"] / grpc_batched,
    }
    peak_rss = max(batched_rss, unbatched_rss)
    met = {name: ratios[name] >= target for name, target in TARGETS.items() if name in ratios}
    met["service_peak_rss_gb"] = peak_rss < TARGETS["service_peak_rss_gb"]
    return {
        "benchmark": "reward",
        "model": model,
        "architecture": scorer.model.config.model_type,
        "clients": clients,
        "max_batch": max_batch,
        "bucket_tokens": bucket_tokens,
        "max_wait_ms": max_wait_ms,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "seconds_per_phase": seconds,
        "mean_tokens_per_item": round3(statistics.mean(len(scorer.encode(i)) for i in items)),
        "items_per_s": {
            "inprocess_batch1": round3(batch1),
            "inprocess_batched": round3(batched_inprocess),
            **{name: round3(phase["items_per_s"]) for name, phase in phases.items()},
        },
        "latency_ms": {
            name: {"p50": round3(phase["p50_ms"]), "p99": round3(phase["p99_ms"])} for name, phase in phases.items()
        },
        "mean_batch_size": {name: round3(phase["mean_batch_size"]) for name, phase in phases.items()},
        "errors": sum(phase["errors"] for phase in phases.values()),
        "service_peak_rss_gb": round3(peak_rss),
        "ratios": {k: round3(v) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": all(met.values()),
        "target_results": met,
    }
