"""The GPU check's driver on CPU: stage outcomes, the time-box and the JSON with stand-in stages; its real stages
on this machine (the environment refused without CUDA; the LoRA promote check through real services)."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from services.tools.gpu_check import (
    GPU_SIZES,
    Run,
    SkipStage,
    Stage,
    _plan_lora_promote,
    _plan_policy_bench,
    _plan_reward_bench,
    has_option,
    run_stages,
)


def python_stage(name: str, code: str, timeout_s: float = 30, needs: tuple[str, ...] = ()) -> Stage:
    return Stage(name, timeout_s, lambda run: [sys.executable, "-c", textwrap.dedent(code)], needs)


def not_here(run: Run) -> list[str]:
    raise SkipStage("nothing to measure here")


def ended(pid: int, within_s: float = 10) -> bool:
    """Whether the process is gone or a zombie (init reaps the orphans of a killed stage in its own time)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def by_name(report: dict) -> dict[str, dict]:
    return {record["name"]: record for record in report["stages"]}


# A stage that ignores SIGTERM, with a child of its own that does not: only the SIGKILL after the grace ends it.
STUCK = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open({pid_file!r}, "w").write(str(child.pid))
    time.sleep(60)
"""


def test_every_outcome_is_recorded_and_a_stuck_stage_is_stopped_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    stages = [
        python_stage("fine", "import json; print('progress'); print(json.dumps({'items_per_s': 3.5}))"),
        python_stage("broken", "import sys; print('the model would not load', file=sys.stderr); sys.exit(3)"),
        Stage("not_here", 30, not_here),
        python_stage("stuck", STUCK.format(pid_file=str(pid_file)), timeout_s=2),
        python_stage("after_broken", "print('{}')", needs=("broken",)),
        python_stage("silent", "pass"),
    ]
    out = tmp_path / "report.json"
    report = run_stages(stages, Run(work=tmp_path / "work"), out, time_box_s=60, stop_grace_s=1)

    records = by_name(report)
    assert {name: r["status"] for name, r in records.items()} == {
        "fine": "ok", "broken": "failed", "not_here": "skipped", "stuck": "timed_out", "after_broken": "skipped",
        "silent": "failed",
    }  # fmt: skip
    assert records["fine"]["result"] == {"items_per_s": 3.5}
    assert "exit 3" in records["broken"]["error"] and "the model would not load" in records["broken"]["error"]
    assert records["not_here"]["reason"] == "nothing to measure here"
    assert records["after_broken"]["reason"] == "needs broken, which did not pass"
    assert "no JSON on stdout" in records["silent"]["error"]
    assert 2 <= records["stuck"]["seconds"] < 6  # its 2 s, then 1 s of grace before SIGKILL
    assert ended(int(pid_file.read_text()))
    assert report["ok"] is False
    assert report["summary"]["failed"] == ["broken", "silent"]
    assert json.loads(out.read_text()) == report  # the file holds what was returned


def test_the_time_box_caps_a_stage_and_leaves_the_rest_unstarted(tmp_path):
    stages = [
        python_stage("long", "import time; time.sleep(30)", timeout_s=60),
        python_stage("next", "print('{}')"),
    ]
    began = time.monotonic()
    report = run_stages(stages, Run(work=tmp_path), tmp_path / "report.json", time_box_s=3, stop_grace_s=1)
    assert time.monotonic() - began < 4.5
    records = by_name(report)
    assert records["long"]["status"] == "timed_out" and records["long"]["timeout_s"] == 2  # the box less the grace
    assert records["next"]["status"] == "timed_out" and records["next"]["reason"].startswith("not started")
    assert report["ok"] is False


def test_all_passed_or_skipped_is_ok(tmp_path):
    stages = [python_stage("fine", "print('{}')"), Stage("not_here", 30, not_here)]
    report = run_stages(stages, Run(work=tmp_path), tmp_path / "report.json", time_box_s=60)
    assert report["ok"] is True and report["summary"] == {"ok": ["fine"], "skipped": ["not_here"]}


DRIVER = """
    import sys
    from pathlib import Path
    import signal
    from services.tools.gpu_check import Run, Stage, run_stages
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(sys.argv[1])
    stuck = Stage("stuck", 60, lambda run: [sys.executable, "-c", {stuck!r}])
    run_stages([stuck], Run(work=work), work / "report.json", time_box_s=60, stop_grace_s=1)
"""


def test_sigterm_to_the_driver_stops_the_stage_and_says_so(tmp_path):
    stuck = textwrap.dedent(STUCK.format(pid_file=str(tmp_path / "child.pid")))
    driver = textwrap.dedent(DRIVER.format(stuck=stuck))
    run = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child.pid").exists() or not (tmp_path / "child.pid").read_text():
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        run.kill()
    assert ended(int((tmp_path / "child.pid").read_text()))
    record = by_name(json.loads((tmp_path / "report.json").read_text()))["stuck"]
    assert record["status"] == "timed_out" and "stopped" in record["reason"]


def test_gpu_plans_use_gpu_sizes_and_the_prepared_models(tmp_path):
    run = Run(work=tmp_path, records={"models": {"status": "ok", "result": {"policy": "/m/policy", "reward": "/m/rm"}}})
    reward = _plan_reward_bench(run)
    assert reward[reward.index("--max-batch") + 1] == str(GPU_SIZES.reward_max_batch) == "128"
    assert reward[reward.index("--model") + 1] == "/m/rm"
    policy = _plan_policy_bench(run)
    assert policy[policy.index("--policy-model") + 1] == "/m/policy"
    assert policy[policy.index("--n") + 1] == str(GPU_SIZES.policy_n)


def test_the_lora_check_runs_on_vllm_only_where_it_is_installed(tmp_path):
    missing = Run(work=tmp_path, records={"environment": {"status": "ok", "result": {"vllm": None}}})
    with pytest.raises(SkipStage, match="vllm is not installed"):
        _plan_lora_promote(missing)
    installed = Run(work=tmp_path, records={"environment": {"status": "ok", "result": {"vllm": "0.11.0"}}})
    assert "lora-promote" in _plan_lora_promote(installed) and "--cpu-smoke" not in _plan_lora_promote(installed)
    smoke = Run(work=tmp_path, cpu_smoke=True, records=missing.records)  # transformers: no vLLM needed
    assert "--cpu-smoke" in _plan_lora_promote(smoke)


def test_null_model_option_is_found_only_as_itself():
    assert has_option("usage: rlhf-loop bench reward [--null-model] [--processes PROCESSES]", "--null-model")
    assert not has_option("usage: rlhf-loop bench reward [--null-model-path PATH]", "--null-model")


def driver(tmp_path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    command = [sys.executable, "-m", "services.tools.gpu_check", "--out", str(out), "--work", str(tmp_path), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(out.read_text())


def test_without_cuda_the_environment_fails_and_the_measuring_stages_are_skipped(tmp_path):
    code, report = driver(tmp_path, "--stages", "environment,models,reward_bench")
    records = by_name(report)
    assert code == 1
    assert records["environment"]["status"] == "failed" and "no CUDA device" in records["environment"]["error"]
    assert records["environment"]["result"]["cuda"] is False
    assert records["models"]["status"] == records["reward_bench"]["status"] == "skipped"


@pytest.mark.integration
def test_cpu_smoke_trains_promotes_and_rolls_back_a_lora_version_through_the_services(tmp_path, tiny_model_dir):
    model = str(tiny_model_dir)
    code, report = driver(
        tmp_path, "--cpu-smoke", "--stages", "models,policy_lora_promote", "--policy-model", model,
        "--reward-model", model,
    )  # fmt: skip
    lora = by_name(report)["policy_lora_promote"]
    assert code == 0, lora.get("error")
    assert lora["status"] == "ok" and lora["result"]["backend"] == "transformers"
    assert all(lora["result"]["checks"].values())
    assert lora["result"]["lora_version"] != lora["result"]["base_version"]
    assert report["sizes"]["lora_steps"] == 2 and report["ok"] is True
