"""`python -m services.tools.gpu_check --out FILE`: the GPU host's check, one prepared run, one JSON.

Stages run one at a time, each as a child process leading a process group of its own (the services it
starts are in that group), under its own timeout and inside the run's time-box. A stage that overruns is
stopped -- SIGTERM to its group, which LocalStack turns into a clean shutdown, then SIGKILL -- and recorded
as timed out, and the run goes on. The JSON is rewritten after every stage, so a run cut short still tells
what finished. Exit 1 when a stage failed or timed out.

Only the standard library is imported at the top: the driver must run, and say why, also where the
project's dependencies did not install.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

STOP_GRACE_S = 20.0  # from SIGTERM to SIGKILL of a stage's group; within the time-box
ERROR_TAIL_CHARS = 3000
# A learning rate far above the loop's (3e-4): a few steps must move the adapter enough to show in the samples.
LORA_CHECK_LEARNING_RATE = 1e-3


class SkipStage(Exception):
    """Raised by a stage's plan: the stage does not apply here, for the reason given."""


@dataclass(frozen=True)
class Sizes:
    """Batch sizes of the benchmarks and of the LoRA check; the defaults are a GPU's."""

    reward_clients: int = 128
    reward_max_batch: int = 128
    reward_bucket_tokens: int = 8192
    reward_seconds: float = 4.0
    reward_null_processes: int = 4  # serving processes against one: the GPU host has 16 cores to spread them over
    policy_prompts: int = 16
    policy_n: int = 8
    policy_max_new_tokens: int = 128
    policy_grpo_steps: int = 4
    lora_prompts: int = 8
    lora_n: int = 4
    lora_max_new_tokens: int = 64
    lora_steps: int = 4


GPU_SIZES = Sizes()
CPU_SMOKE_SIZES = Sizes(
    reward_clients=2, reward_max_batch=4, reward_bucket_tokens=512, reward_seconds=0.5, reward_null_processes=2,
    policy_prompts=2, policy_n=2, policy_max_new_tokens=8, policy_grpo_steps=2,
    lora_prompts=2, lora_n=2, lora_max_new_tokens=8, lora_steps=2,
)  # fmt: skip


@dataclass
class Run:
    """What the stages' plans read: the options, the environment of the stages and the records so far."""

    work: Path
    policy_model: str = "smollm2"
    reward_model: str = "minilm"
    model_config: Path | None = None
    wheels: Path | None = None
    cpu_smoke: bool = False
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"})
    records: dict[str, dict] = field(default_factory=dict)

    @property
    def sizes(self) -> Sizes:
        return CPU_SMOKE_SIZES if self.cpu_smoke else GPU_SIZES

    @property
    def backend(self) -> str:
        """The policy service's generation backend in the LoRA check: vLLM on a GPU, transformers in a CPU smoke run."""
        return "transformers" if self.cpu_smoke else "vllm"

    def model(self, role: str) -> str:
        """The path the models stage prepared for `role` ("policy" or "reward"), else the option as given."""
        prepared = self.records.get("models", {}).get("result") or {}
        return prepared.get(role) or (self.policy_model if role == "policy" else self.reward_model)

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "services.cli", *args]

    def own_stage(self, name: str, *args: str) -> list[str]:
        """This module run as one stage's body (`--run-stage`), JSON on stdout."""
        smoke = ["--cpu-smoke"] if self.cpu_smoke else []
        return [sys.executable, "-m", "services.tools.gpu_check", "--run-stage", name, "--work", str(self.work),
                *smoke, *args]  # fmt: skip


@dataclass(frozen=True)
class Stage:
    name: str
    timeout_s: float
    plan: Callable[[Run], list[str]]  # the command to run; raises SkipStage when the stage does not apply
    needs: tuple[str, ...] = ()  # stages, transitive ones too, that must not have failed or timed out


# -- the runner ------------------------------------------------------------------------------------------


def run_stages(stages: list[Stage], run: Run, out: Path, time_box_s: float, stop_grace_s: float = STOP_GRACE_S) -> dict:
    """Run the stages in order within `time_box_s`, writing the report to `out` after each; return it."""
    began = time.monotonic()
    deadline = began + time_box_s
    report = {
        "check": "gpu",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "time_box_s": time_box_s,
        "work": str(run.work),
        "sizes": asdict(run.sizes),
        "stages": [],
    }
    (run.work / "logs").mkdir(parents=True, exist_ok=True)
    for stage in stages:
        try:
            record = _run_stage(stage, run, deadline, stop_grace_s)
        except BaseException as stopped:  # SIGTERM to the driver (its outer timeout) or Ctrl-C: say so, then stop
            record = {"name": stage.name, "status": "timed_out", "reason": f"the check was stopped ({stopped!r})"}
            _add(report, run, record, began, out)
            raise
        _add(report, run, record, began, out)
    return report


def _add(report: dict, run: Run, record: dict, began: float, out: Path) -> None:
    run.records[record["name"]] = record
    report["stages"].append(record)
    statuses = [r["status"] for r in report["stages"]]
    report["wall_s"] = round(time.monotonic() - began, 1)
    report["summary"] = {s: [r["name"] for r in report["stages"] if r["status"] == s] for s in sorted(set(statuses))}
    report["ok"] = not any(s in ("failed", "timed_out") for s in statuses)
    _write_json(out, report)


def _run_stage(stage: Stage, run: Run, deadline: float, stop_grace_s: float) -> dict:
    record: dict = {"name": stage.name}
    failed_needs = [n for n in stage.needs if run.records.get(n, {}).get("status") in ("failed", "timed_out")]
    if failed_needs:
        return {**record, "status": "skipped", "reason": f"needs {', '.join(failed_needs)}, which did not pass"}
    try:
        command = stage.plan(run)
    except SkipStage as skip:
        return {**record, "status": "skipped", "reason": str(skip)}
    except Exception as error:
        return {**record, "status": "failed", "error": f"planning the stage: {error!r}"}
    budget = min(stage.timeout_s, deadline - time.monotonic() - stop_grace_s)
    if budget < 1:
        left = max(deadline - time.monotonic(), 0)
        return {**record, "status": "timed_out", "reason": f"not started: {left:.0f} s of the time-box left"}
    log = run.work / "logs" / f"{stage.name}.log"
    stdout = log.with_suffix(".out")
    record.update(timeout_s=round(budget, 1), log=str(log))
    began = time.monotonic()
    with open(stdout, "w") as out_file, open(log, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=out_file, stderr=log_file, env=run.env, start_new_session=True, stdin=subprocess.DEVNULL
        )
        try:
            returncode: int | None = process.wait(budget)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            _stop_group(process, stop_grace_s)  # what the stage left running, or all of it when it overran
    record["seconds"] = round(time.monotonic() - began, 1)
    result = _last_json_line(stdout.read_text())
    if result is not None:
        record["result"] = result
    if returncode is None:
        return {**record, "status": "timed_out", "error": f"over {budget:.0f} s; log tail:\n{_tail(log)}"}
    if returncode != 0:
        return {**record, "status": "failed", "error": f"exit {returncode}; log tail:\n{_tail(log)}"}
    if result is None:
        return {**record, "status": "failed", "error": f"no JSON on stdout; log tail:\n{_tail(log)}"}
    return {**record, "status": "ok"}


def _stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the stage's process group, SIGKILL to whatever is left of it after `grace_s`."""
    if not _signal_group(process.pid, signal.SIGTERM):
        return
    until = time.monotonic() + grace_s
    while time.monotonic() < until:
        process.poll()  # reap the leader: a zombie would keep the group alive
        if not _signal_group(process.pid, 0):
            return
        time.sleep(0.05)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)
    return None


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-ERROR_TAIL_CHARS:]


def _write_json(path: Path, data: dict) -> None:
    """Write beside `path`, then rename: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# -- the stages' plans -----------------------------------------------------------------------------------


def _plan_install(run: Run) -> list[str]:
    if run.wheels is not None:
        site = run.work / "site"
        run.env["PYTHONPATH"] = os.pathsep.join([str(site), os.getcwd()])  # the later stages import from there
        wheels = sorted(str(w) for w in run.wheels.glob("*.whl"))
        if not wheels:
            raise FileNotFoundError(f"no wheels in {run.wheels}")
        return [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                "--target", str(site), *wheels]  # fmt: skip
    if all(importlib.util.find_spec(name) for name in ("torch", "trl", "grpc_health")):
        raise SkipStage("the project's packages are installed")
    return [sys.executable, "-m", "pip", "install", "-q", "-e", ".[server]"]


def _plan_reward_null_bench(run: Run) -> list[str]:
    help_text = subprocess.run(
        run.cli("bench", "reward", "--help"), env=run.env, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    if not has_option(help_text, "--null-model"):
        raise SkipStage("`bench reward` has no --null-model option in this checkout")
    s = run.sizes
    return run.cli(
        "bench", "reward", "--null-model", "--processes", str(s.reward_null_processes),
        "--max-batch", str(s.reward_max_batch), "--seconds", str(s.reward_seconds), "--json",
    )  # fmt: skip


def has_option(help_text: str, option: str) -> bool:
    """Whether an argparse help text lists `option` (as itself, not as the prefix of a longer one)."""
    return any(word.strip("[],") == option for word in help_text.split())


def _plan_reward_bench(run: Run) -> list[str]:
    s = run.sizes
    return run.cli(
        "bench", "reward", "--model", run.model("reward"), "--clients", str(s.reward_clients),
        "--max-batch", str(s.reward_max_batch), "--bucket-tokens", str(s.reward_bucket_tokens),
        "--seconds", str(s.reward_seconds), "--json",
    )  # fmt: skip


def _plan_policy_bench(run: Run) -> list[str]:
    s = run.sizes
    return run.cli(
        "bench", "policy", "--policy-model", run.model("policy"), "--reward-model", run.model("reward"),
        "--prompts", str(s.policy_prompts), "--n", str(s.policy_n), "--max-new-tokens", str(s.policy_max_new_tokens),
        "--grpo-steps", str(s.policy_grpo_steps), "--json",
    )  # fmt: skip


def _plan_lora_promote(run: Run) -> list[str]:
    if run.backend == "vllm" and not _vllm_version(run):
        raise SkipStage("vllm is not installed")
    return run.own_stage("lora-promote", "--policy-model", run.model("policy"), "--reward-model", run.model("reward"))


def _vllm_version(run: Run) -> str | None:
    """vLLM's version as the environment stage saw it (it imports from the stages' PYTHONPATH), else as seen here."""
    environment = run.records.get("environment", {}).get("result")
    if environment is not None:
        return environment.get("vllm")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("vllm")
    return None


def _plan_models(run: Run) -> list[str]:
    args = ["--policy-model", run.policy_model, "--reward-model", run.reward_model]
    if run.model_config is not None:
        args += ["--model-config", str(run.model_config)]
    return run.own_stage("models", *args)


PREPARED = ("install", "environment", "models")  # what every measuring stage stands on
STAGES = [
    Stage("install", 150, _plan_install),
    Stage("environment", 60, lambda run: run.own_stage("environment"), needs=PREPARED[:1]),
    Stage("models", 150, _plan_models, needs=PREPARED[:2]),
    # The vLLM path first: it is the part that no CPU machine can run.
    Stage("policy_lora_promote", 300, _plan_lora_promote, needs=PREPARED),
    Stage("reward_bench", 180, _plan_reward_bench, needs=PREPARED),
    Stage("reward_bench_null_model", 120, _plan_reward_null_bench, needs=PREPARED),
    Stage("policy_bench", 300, _plan_policy_bench, needs=PREPARED),
]


# -- the stages that run this module (`--run-stage`) ----------------------------------------------------------


def environment_report() -> dict:
    """Versions, the device, and whether vLLM is installed (not imported: that alone takes seconds)."""
    import torch

    import services.policy.service  # noqa: F401 - the project and its server dependencies import

    cuda = torch.cuda.is_available()
    report = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": cuda,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "vllm": _installed_version("vllm"),
        **{name: _installed_version(name) for name in ("transformers", "trl", "peft", "grpcio")},
    }
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        report["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return report


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def prepare_models(policy_model: str, reward_model: str, model_config: Path | None, work: Path) -> dict:
    """Paths of the two models: resolved (the embedded ones converted once), or random with given shapes.

    `model_config` holds `smollm2/` and `minilm/` (config + tokenizer) for a host where no weights can be
    had: same shapes and cost as the embedded models, meaningless text.
    """
    if model_config is None:
        from services.models.loading import resolve_model

        return {
            "source": "resolved",
            "policy": str(resolve_model(policy_model)),
            "reward": str(resolve_model(reward_model)),
        }
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    paths = {}
    for role, name, auto, extra in (
        ("policy", "smollm2", AutoModelForCausalLM, {}),
        ("reward", "minilm", AutoModelForSequenceClassification, {"num_labels": 1}),
    ):
        out = work / "models" / f"{name}-shaped"
        shutil.copytree(model_config / name, out, dirs_exist_ok=True)
        torch.manual_seed(0)
        auto.from_config(AutoConfig.from_pretrained(out, **extra)).save_pretrained(out)
        paths[role] = str(out)
    return {"source": f"random weights, shapes from {model_config}", **paths}


def lora_promote_check(policy_model: str, reward_model: str, backend: str, sizes: Sizes, work: Path) -> dict:
    """Generate from the base, train a LoRA version (GRPO on the stack's reward), promote it, generate, roll back.

    The checks: each reply names the version that should have served it, and the promoted adapter changes
    what the same seed samples (the texts, or else their log-probabilities).
    """
    from services.policy.client import PolicyClient
    from services.tools.local_stack import LocalStack
    from services.tools.policy_bench import PROMPTS
    from services.tools.progress import stderr_progress

    prompts = (PROMPTS * (sizes.lora_prompts // len(PROMPTS) + 1))[: sizes.lora_prompts]
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": sizes.lora_max_new_tokens, "seed": 7}
    root = work / "lora-stack"
    root.mkdir(parents=True, exist_ok=True)
    progress = stderr_progress("gpu check")
    with LocalStack(root, progress=progress) as stack:
        stack.reward(reward_model)
        stack.policy(policy_model, "--generation-backend", backend, timeout_s=300)
        with PolicyClient(stack.target("policy"), timeout_s=300) as client:
            info = client.info()
            base_id = info.active_version
            progress(f"Generate from {base_id} ({info.generation_backend} on {info.device})")
            base = _generate(client, prompts, sizes.lora_n, sampling)
            progress(f"GRPO, LoRA, {sizes.lora_steps} steps")
            began = time.monotonic()
            events = list(client.train(
                prompts=prompts, method="grpo", use_lora=True, max_steps=sizes.lora_steps,
                prompts_per_step=min(len(prompts), 4), num_generations=sizes.lora_n,
                max_new_tokens=sizes.lora_max_new_tokens, learning_rate=LORA_CHECK_LEARNING_RATE,
                save_steps=100_000, timeout_s=600,
            ))  # fmt: skip
            train_s = time.monotonic() - began
            lora_id = events[-1].version.id
            progress(f"Promote {lora_id}, Generate, Rollback, Generate")
            promoted = client.promote(lora_id)
            tuned = _generate(client, prompts, sizes.lora_n, sampling)
            rolled_back = client.rollback()
            after = _generate(client, prompts, sizes.lora_n, sampling)
    steps = [e.progress for e in events[:-1]]
    checks = {
        "base_reply_names_base": base["version"] == base_id,
        "promote_makes_lora_active": promoted.active == lora_id,
        "reply_after_promote_names_lora": tuned["version"] == lora_id,
        "lora_changes_samples": tuned["texts"] != base["texts"] or _logprob_delta(tuned, base) > 1e-3,
        "rollback_makes_base_active": rolled_back.active == base_id,
        "reply_after_rollback_names_base": after["version"] == base_id,
    }
    return {
        "backend": info.generation_backend,
        "device": info.device,
        "base_version": base_id,
        "lora_version": lora_id,
        "generate": {"prompts": len(prompts), "n": sizes.lora_n, **sampling},
        "tokens_per_s": {name: g["tokens_per_s"] for name, g in (("base", base), ("lora", tuned), ("rollback", after))},
        "train": {
            "steps": len(steps),
            "wall_s": round(train_s, 1),
            "mean_step_s": round(sum(s.step_seconds for s in steps) / max(len(steps), 1), 3),
            "reward_mean_first_last": [round(steps[0].reward_mean, 4), round(steps[-1].reward_mean, 4)]
            if steps
            else [],
        },
        "checks": checks,
        "observed": {
            "texts_changed": tuned["texts"] != base["texts"],
            "logprob_delta_lora_vs_base": round(_logprob_delta(tuned, base), 4),
            # Not a check: vLLM is not bitwise deterministic across batches (prefix caching, kernels).
            "rollback_texts_match_base": after["texts"] == base["texts"],
        },
        "sample": {"base": base["texts"][0][:200], "lora": tuned["texts"][0][:200]},
    }


def _generate(client, prompts: list[str], n: int, sampling: dict) -> dict:
    began = time.monotonic()
    reply = client.generate(prompts, n=n, **sampling)
    seconds = time.monotonic() - began
    completions = [c for row in reply.results for c in row.completions]
    return {
        "version": reply.version,
        "texts": [c.text for c in completions],
        "logprobs": [c.logprob_sum for c in completions],
        "tokens_per_s": round(sum(c.completion_tokens for c in completions) / max(seconds, 1e-9), 1),
    }


def _logprob_delta(a: dict, b: dict) -> float:
    return max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"], strict=True))


def _run_own_stage(args: argparse.Namespace) -> int:
    """One stage's body in this process: its JSON on stdout, exit 1 when its checks fail."""
    if args.run_stage == "environment":
        report = environment_report()
        print(json.dumps(report))
        if not report["cuda"] and not args.cpu_smoke:
            print("no CUDA device: this check measures a GPU (--cpu-smoke runs it small on CPU)", file=sys.stderr)
            return 1
        return 0
    if args.run_stage == "models":
        print(json.dumps(prepare_models(args.policy_model, args.reward_model, args.model_config, args.work)))
        return 0
    run = Run(work=args.work, cpu_smoke=args.cpu_smoke)
    result = lora_promote_check(args.policy_model, args.reward_model, run.backend, run.sizes, args.work)
    print(json.dumps(result))
    failed = [name for name, passed in result["checks"].items() if not passed]
    if failed:
        print(f"checks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


# -- the command line ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.tools.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="the JSON report (written after every stage)")
    parser.add_argument("--time-box-s", type=float, default=600.0, help="the whole run's limit (default 600)")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(s.name for s in STAGES)}")
    parser.add_argument("--cpu-smoke", action="store_true", help="small sizes, no CUDA needed, transformers backend")
    parser.add_argument("--policy-model", default="smollm2", help="'smollm2' or a checkpoint dir")
    parser.add_argument("--reward-model", default="minilm", help="'minilm' or a checkpoint dir")
    parser.add_argument("--model-config", type=Path, help="random models with the shapes of DIR/smollm2, DIR/minilm")
    parser.add_argument("--wheels", type=Path, help="offline: install the project's wheels from DIR first")
    parser.add_argument("--work", type=Path, help="stage logs, models, registries (default: a new temp dir)")
    parser.add_argument("--run-stage", choices=["environment", "models", "lora-promote"], help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.work = args.work or Path(tempfile.mkdtemp(prefix="rlhf-gpu-check-"))
    if args.run_stage:
        return _run_own_stage(args)
    if args.out is None:
        parser.error("--out is required")
    stages = STAGES
    if args.stages:
        chosen = args.stages.split(",")
        unknown = set(chosen) - {s.name for s in STAGES}
        if unknown:
            parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
        stages = [s for s in STAGES if s.name in chosen]
    run = Run(
        work=args.work, policy_model=args.policy_model, reward_model=args.reward_model,
        model_config=args.model_config, wheels=args.wheels, cpu_smoke=args.cpu_smoke,
    )  # fmt: skip
    # Python dies of SIGTERM without running `finally`: as SystemExit, it stops the running stage's group first.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = run_stages(stages, run, args.out, args.time_box_s)
    print(json.dumps({"ok": report["ok"], "wall_s": report["wall_s"], **report["summary"]}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
