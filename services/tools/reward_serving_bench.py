"""`rlhf-loop bench reward --null-model`: the reward service's serving path alone, one process vs N.

The real service process (gRPC, validation, the batcher, the executor hop, the
replies) with a stand-in model whose forward pass costs nothing
(services/reward/null_scorer.py), so its items/s is the ceiling that the
per-request Python cost puts on any model, however fast: 32 clients sending
1 item per request and 4 clients sending 64, against one serving process and
against `--processes N` on the same port, in one run.
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path

from services.reward.null_scorer import NULL_MODEL
from services.tools.progress import stderr_progress
from services.tools.reward_bench import drive_grpc, item_mix, round3, running_services

SHAPES = {"32x1": (32, 1), "4x64": (4, 64)}  # clients, items per request
# More serving processes must not serve fewer items (here they share 2 cores with the clients, see README).
TARGETS = {f"{shape}_processes_vs_one": 1.0 for shape in SHAPES}
_progress = stderr_progress("bench reward --null-model")


def run_serving_path_benchmark(
    processes: int = 2, seconds: float = 10.0, max_batch: int = 32, max_wait_ms: float = 5.0
) -> dict:
    if processes < 2:
        raise ValueError("--processes must be at least 2: one process is the baseline it is compared with")
    items = item_mix(512)
    counts = {f"processes_{count}": count for count in (1, processes)}
    measured: dict[str, dict[str, dict]] = {name: {} for name in counts}
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-serving-") as tmp:
        workdir = Path(tmp)
        args = ["--registry", str(workdir / "registry"), "--null-model"]
        args += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
        with running_services(workdir, {name: (args, count) for name, count in counts.items()}) as running:
            for shape, (clients, per_request) in SHAPES.items():
                for name, service in running.items():
                    _progress(f"{counts[name]} serving process(es): {shape} ({seconds:.0f}s)")
                    drive = partial(drive_grpc, items=items, clients=clients, seconds=seconds)
                    measured[name][shape] = service.measure(partial(drive, items_per_request=per_request))

    shapes = {}
    for shape, (clients, per_request) in SHAPES.items():
        shapes[shape] = {"clients": clients, "items_per_request": per_request}
        for name, runs in measured.items():
            run = runs[shape]
            shapes[shape][name] = {
                "items_per_s": round3(run["items_per_s"]),
                "p50_ms": round3(run["p50_ms"]),
                "p99_ms": round3(run["p99_ms"]),
                "mean_batch_size": round3(run["mean_batch_size"]),
                "server_cpu_us_per_item": round3(run["server_cpu_us_per_item"]),
                "client_cpu_us_per_item": round3(run["client_cpu_us_per_item"]),
                # What one core of serving processes gets through: the ceiling per core on a bigger machine.
                "server_items_per_cpu_s": round3(1e6 / run["server_cpu_us_per_item"]),
                "errors": run["errors"],
            }
    many = measured[f"processes_{processes}"]
    ratios = {
        f"{shape}_processes_vs_one": many[shape]["items_per_s"] / measured["processes_1"][shape]["items_per_s"]
        for shape in SHAPES
    }
    met = {name: round3(ratios[name]) >= target for name, target in TARGETS.items()}
    return {
        "benchmark": "reward-serving-path",
        "model": NULL_MODEL,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "processes": [1, processes],
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "batch_wait_policy": "adaptive",
        "seconds_per_phase": seconds,
        "shapes": shapes,
        "errors": sum(run["errors"] for runs in measured.values() for run in runs.values()),
        "ratios": {k: round3(v) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": all(met.values()),
        "target_results": met,
    }
