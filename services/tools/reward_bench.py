"""`rlhf-loop bench reward`: serving throughput measured side by side in one run.

Four measurements on the same model and the same mix of prompt/response
lengths: direct forward passes at batch 1 and at the serving batch size, and
the real service under concurrent single-item clients with dynamic batching
on and off (off = one forward per request, as OpenRLHF's reward server does).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import torch

from services.models.registry import ModelRegistry
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.scorer import RewardScorer, ScoreItem
from services.reward.service import VERSION_PREFIX
from services.tools.progress import stderr_progress
from services.tools.service_process import ServiceProcess

TARGETS = {"grpc_vs_inprocess": 0.8, "batched_vs_unbatched": 2.0, "service_peak_rss_gb": 1.5}
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


async def _drive_clients(target: str, items: list[ScoreItem], clients: int, seconds: float) -> dict:
    """`clients` coroutines, each with its own channel, sending one item per request in a loop."""
    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]
    stubs = [reward_pb2_grpc.RewardServiceStub(c) for c in channels]
    latencies: list[float] = []
    errors = 0

    async def client(n: int, until: float, record: bool) -> None:
        nonlocal errors
        cursor = n
        while time.perf_counter() < until:
            item = items[cursor % len(items)]
            cursor += clients
            sent = time.perf_counter()
            try:
                await stubs[n].Score(
                    reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(prompt=item.prompt, response=item.response)]),
                    timeout=30,
                )
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if record:
                latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(client(n, time.perf_counter() + 1.0, False) for n in range(clients)))  # warm-up
    start = time.perf_counter()
    await asyncio.gather(*(client(n, start + seconds, True) for n in range(clients)))
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    ordered = sorted(latencies)
    return {
        "items_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "errors": errors,
    }


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
) -> dict:
    """Start the real service with this batching, drive it, and read its peak RSS."""
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
    try:
        service.wait_ready()
        result = asyncio.run(_drive_clients(service.target, items, clients, seconds))
        result["peak_rss_gb"] = service.peak_rss_bytes() / 2**30
        result["mean_batch_size"] = _mean_batch_size(service.http)
    finally:
        service.stop()
    return result


def _mean_batch_size(http: str) -> float:
    """Mean of the service's own rlhf_reward_batch_size histogram."""
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("rlhf_reward_batch_size_sum", "rlhf_reward_batch_size_count"))
    }
    return values["rlhf_reward_batch_size_sum"] / max(values["rlhf_reward_batch_size_count"], 1)


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
        _progress(f"batched service ({clients} clients, max_batch {max_batch}, {seconds:.0f}s)")
        batched = _measure_service(
            workdir, registry, model, items, clients, seconds, max_batch, bucket_tokens, max_wait_ms
        )
        _progress("unbatched service (one forward per request)")
        unbatched = _measure_service(workdir, registry, model, items, clients, seconds, 1, bucket_tokens, max_wait_ms)
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

    ratios = {
        "grpc_vs_inprocess": batched["items_per_s"] / batched_inprocess,
        "batched_vs_unbatched": batched["items_per_s"] / unbatched["items_per_s"],
    }
    peak_rss = max(batched["peak_rss_gb"], unbatched["peak_rss_gb"])
    met = {
        "grpc_vs_inprocess": ratios["grpc_vs_inprocess"] >= TARGETS["grpc_vs_inprocess"],
        "batched_vs_unbatched": ratios["batched_vs_unbatched"] >= TARGETS["batched_vs_unbatched"],
        "service_peak_rss_gb": peak_rss < TARGETS["service_peak_rss_gb"],
    }
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
            "grpc_batched": round3(batched["items_per_s"]),
            "grpc_unbatched": round3(unbatched["items_per_s"]),
        },
        "latency_ms": {
            "grpc_batched": {"p50": round3(batched["p50_ms"]), "p99": round3(batched["p99_ms"])},
            "grpc_unbatched": {"p50": round3(unbatched["p50_ms"]), "p99": round3(unbatched["p99_ms"])},
        },
        "mean_batch_size": {
            "grpc_batched": round3(batched["mean_batch_size"]),
            "grpc_unbatched": round3(unbatched["mean_batch_size"]),
        },
        "errors": batched["errors"] + unbatched["errors"],
        "service_peak_rss_gb": round3(peak_rss),
        "ratios": {k: round3(v) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": all(met.values()),
        "target_results": met,
    }
