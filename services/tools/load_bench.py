"""`rlhf-loop bench load`: the reward service and the backend under sustained load, then under overload.

Phase 1: `clients` concurrent clients for `seconds` — three quarters call the
reward service's Score with one item, a quarter call the backend's /predict
with a task of 4 candidates (one Rank through the reward service each) — on
the default MiniLM model. Requests served, errors, p50/p99 per endpoint, and
each service's RSS averaged over the first and the last 10 s (a leak shows as
growth).

Phase 2: a second reward service with a small queue is flooded with large
Score requests: excess requests must be refused with RESOURCE_EXHAUSTED
quickly, accepted ones must finish within their deadline, and once the flood
stops single requests must be as fast as before it.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc

from labelstudio_backend.templates import TEMPLATES
from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.tools.memory import RssSampler
from services.tools.progress import stderr_progress
from services.tools.reward_bench import item_mix
from services.tools.service_process import ServiceProcess

TARGETS = {"errors": 0, "rss_growth": 0.10, "rejection_p99_ms": 100.0, "accepted_missed_deadline": 0,
           "recovery_p50_ratio": 1.5}  # fmt: skip
RSS_WINDOW_S = 10.0
_progress = stderr_progress("bench load")


def _score_request(items) -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(items=[reward_pb2.ScoreItem(prompt=i.prompt, response=i.response) for i in items])


@dataclass
class Endpoint:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        pick = (lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)) if ordered else None
        return {"served": len(ordered), "errors": sum(self.errors.values()), "error_kinds": self.errors,
                "p50_ms": pick(0.5) if pick else None, "p99_ms": pick(0.99) if pick else None}  # fmt: skip


def rss_windows(sampler: RssSampler) -> dict[str, dict]:
    """Mean RSS in the first and the last RSS_WINDOW_S seconds of the sampling, and the growth between them."""
    result = {}
    for name, samples in sampler.samples.items():
        end = samples[-1][0]
        first = [rss for t, rss in samples if t - sampler.started <= RSS_WINDOW_S]
        last = [rss for t, rss in samples if end - t < RSS_WINDOW_S]
        first_mb, last_mb = statistics.fmean(first) / 2**20, statistics.fmean(last) / 2**20
        result[name] = {"first_10s_mb": round(first_mb, 1), "last_10s_mb": round(last_mb, 1),
                        "growth": round(last_mb / first_mb - 1, 4)}  # fmt: skip
    return result


async def _sustained(reward: ServiceProcess, backend: ServiceProcess, clients: int, seconds: float) -> dict:
    items = item_mix(512)
    score, predict = Endpoint(), Endpoint()
    label_config = TEMPLATES["ranker"].label_config
    channel = grpc.aio.insecure_channel(reward.target)
    stub = reward_pb2_grpc.RewardServiceStub(channel)
    until = time.perf_counter() + seconds

    async def score_client(n: int) -> None:
        cursor = n
        while time.perf_counter() < until:
            item = items[cursor % len(items)]
            cursor += clients
            sent = time.perf_counter()
            try:
                await stub.Score(_score_request([item]), timeout=30)
                score.latencies.append(time.perf_counter() - sent)
            except grpc.aio.AioRpcError as error:
                score.error(error.code().name)

    async def predict_client(n: int, session: aiohttp.ClientSession) -> None:
        cursor = n
        while time.perf_counter() < until:
            group = [items[(cursor + j) % len(items)] for j in range(4)]
            cursor += clients
            task = {"id": cursor, "data": {"prompt": group[0].prompt,
                                           "candidates": [{"id": f"c{j}", "body": it.response}
                                                          for j, it in enumerate(group)]}}  # fmt: skip
            sent = time.perf_counter()
            try:
                async with session.post(f"{backend.http}/predict",
                                        json={"tasks": [task], "label_config": label_config}) as reply:  # fmt: skip
                    body = await reply.json()
                    if reply.status != 200 or not body["results"][0]["result"]:
                        predict.error(f"HTTP {reply.status}")
                        continue
                predict.latencies.append(time.perf_counter() - sent)
            except (TimeoutError, aiohttp.ClientError) as error:
                predict.error(type(error).__name__)

    predictors = max(1, clients // 4)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(
            *(score_client(n) for n in range(clients - predictors)),
            *(predict_client(n, session) for n in range(predictors)),
        )
    await channel.close()
    return {"score": score.summary(), "predict": predict.summary(), "score_clients": clients - predictors,
            "predict_clients": predictors}  # fmt: skip


async def _single_requests(target: str, seconds: float) -> Endpoint:
    """One client, one item at a time: the latency a lone caller sees."""
    result = Endpoint()
    items = item_mix(64, seed=1)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        until, cursor = time.perf_counter() + seconds, 0
        while time.perf_counter() < until:
            item = items[cursor % len(items)]
            cursor += 1
            sent = time.perf_counter()
            await stub.Score(_score_request([item]), timeout=30)
            result.latencies.append(time.perf_counter() - sent)
    return result


async def _overload(target: str, seconds: float, concurrency: int, batch: int, deadline_s: float) -> dict:
    items = item_mix(512, seed=2)
    accepted, rejected = Endpoint(), Endpoint()
    missed = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        until = time.perf_counter() + seconds

        async def flood(n: int) -> None:
            nonlocal missed
            cursor = n * batch
            while time.perf_counter() < until:
                chunk = [items[(cursor + j) % len(items)] for j in range(batch)]
                cursor += concurrency * batch
                request = _score_request(chunk)
                sent = time.perf_counter()
                try:
                    await stub.Score(request, timeout=deadline_s)
                    accepted.latencies.append(time.perf_counter() - sent)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        rejected.latencies.append(time.perf_counter() - sent)
                        await asyncio.sleep(0.01)  # a polite client backs off a little
                    elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        missed += 1
                    else:
                        accepted.error(error.code().name)

        await asyncio.gather(*(flood(n) for n in range(concurrency)))
    return {"accepted": accepted.summary(), "rejected": rejected.summary(), "accepted_missed_deadline": missed}


def run_load_benchmark(model: str = "minilm", clients: int = 64, seconds: float = 60.0,
                       overload_seconds: float = 20.0) -> dict:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-load-") as tmp:
        root = Path(tmp)
        reward = ServiceProcess("reward", ["--registry", str(root / "reward"), "--model", model], root / "reward.log")
        reward.wait_ready()
        backend = ServiceProcess(
            "backend", ["--store", f"sqlite:///{root / 'prefs.db'}", "--reward-url", reward.target], root / "b.log"
        )
        try:
            backend.wait_ready()
            _progress(f"sustained: {clients} clients for {seconds:.0f}s against Score and /predict")
            readers = {"reward": reward.rss_bytes, "backend": backend.rss_bytes}
            with RssSampler(readers, interval_s=1.0) as rss:
                sustained = asyncio.run(_sustained(reward, backend, clients, seconds))
            sustained["rss"] = rss_windows(rss)
        finally:
            backend.stop()
            reward.stop()

        # A reward service whose queue holds 4 batches: the flood below asks for far more.
        small = ServiceProcess("reward", ["--registry", str(root / "reward"), "--model", model, "--max-queue", "128",
                                          "--max-batch", "32"], root / "reward-small.log")  # fmt: skip
        try:
            small.wait_ready()
            _progress("overload: baseline latency of a lone client")
            before = asyncio.run(_single_requests(small.target, 5.0)).summary()
            _progress(f"overload: 64 clients x 32 items for {overload_seconds:.0f}s into a 128-item queue")
            overload = asyncio.run(_overload(small.target, overload_seconds, 64, 32, deadline_s=5.0))
            _progress("overload: a lone client again")
            after = asyncio.run(_single_requests(small.target, 5.0)).summary()
        finally:
            small.stop()

    overload |= {"lone_client_before": before, "lone_client_after": after,
                 "recovery_p50_ratio": round(after["p50_ms"] / before["p50_ms"], 3)}  # fmt: skip
    errors = sustained["score"]["errors"] + sustained["predict"]["errors"]
    growth = max(r["growth"] for r in sustained["rss"].values())
    met = {
        "errors": errors <= TARGETS["errors"],
        "rss_growth": growth < TARGETS["rss_growth"],
        "rejection_p99_ms": overload["rejected"]["served"] > 0
        and overload["rejected"]["p99_ms"] <= TARGETS["rejection_p99_ms"],
        "accepted_missed_deadline": overload["accepted_missed_deadline"] <= TARGETS["accepted_missed_deadline"],
        "recovery_p50_ratio": overload["recovery_p50_ratio"] <= TARGETS["recovery_p50_ratio"],
    }
    return {
        "benchmark": "load", "model": model, "clients": clients, "seconds": seconds, "sustained": sustained,
        "overload": overload, "targets": TARGETS, "target_results": met, "targets_met": all(met.values()),
    }  # fmt: skip
