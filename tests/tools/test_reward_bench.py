"""`rlhf-loop bench reward` (tiny model) and `bench reward --null-model`: every figure and target is there."""

from services.tools.reward_bench import TARGETS, run_reward_benchmark
from services.tools.reward_serving_bench import SHAPES, run_serving_path_benchmark


def test_the_serving_path_is_measured_with_one_process_and_with_n(tmp_path):
    report = run_serving_path_benchmark(processes=2, seconds=0.3)
    assert report["errors"] == 0 and set(report["shapes"]) == set(SHAPES)
    for shape in report["shapes"].values():
        for processes in ("processes_1", "processes_2"):
            run = shape[processes]
            assert run["items_per_s"] > 0 and run["server_cpu_us_per_item"] > 0
    # 64-item requests fill every batch of 32 exactly, whatever the timing.
    assert report["shapes"]["4x64"]["processes_1"]["mean_batch_size"] == 32.0
    assert set(report["ratios"]) == set(report["targets"]) and "targets_met" in report


def test_both_batch_waits_are_measured_at_each_client_count(tiny_model_dir):
    report = run_reward_benchmark(model=str(tiny_model_dir), clients=4, seconds=0.3, max_batch=4, wait_clients=(1,))
    assert report["errors"] == 0 and set(report["batch_wait"]) == {"1", "4"}
    for load in report["batch_wait"].values():
        assert set(load) == {"inprocess_items_per_s", "unbatched", "fixed", "adaptive"}
        for policy in ("fixed", "adaptive"):
            assert {"mean_batch_size", "p50_ms", "grpc_vs_inprocess", "batched_vs_unbatched"} <= set(load[policy])
    assert report["batch_wait"]["1"]["adaptive"]["mean_batch_size"] == 1.0  # one client, one item at a time
    assert set(TARGETS) == set(report["target_results"]) and report["targets"] == TARGETS
