"""`rlhf-loop demo` (`make demo`): the whole loop on the embedded models, offline, with simulated annotators.

A local Label Studio, the reward service on MiniLM and the policy service on
SmolLM2-135M-Instruct start as processes; the loop runs its iterations with
simulated annotators (real Label Studio users ranking by a gold scorer plus
noise); then the report judges the final policy against the initial one by
the gold scorer and writes report.md/.html/.json and the plots.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from services.controller.gates import Gates
from services.controller.loop import RlhfLoop
from services.controller.loop_config import LoopConfig
from services.controller.progress import LoopProgress, RichLoopProgress
from services.core.loader import load_function
from services.tools.local_stack import LocalStack

DEMO_GOLD = "services.sim.gold:friendly_and_on_topic"
MARKER = ".rlhf-loop-demo"  # only a folder carrying it is wiped before a new run


def demo_config(root: Path, reward_url: str, policy_url: str, iterations: int, gold: str = DEMO_GOLD) -> LoopConfig:
    """The demo's settings for a 2-core machine (README: what the last run measured, and what it missed)."""
    return LoopConfig(
        state_url=f"sqlite:///{root / 'loop-state.db'}",
        store_url=f"sqlite:///{root / 'preferences.db'}",
        reward_url=reward_url,
        policy_url=policy_url,
        labelstudio_data_dir=str(root / "label-studio"),
        project_title="rlhf-loop demo",
        heldout_prompts=24,
        iterations=iterations,
        prompts_per_iteration=40,
        first_round_prompts=60,  # the reward model starts from nothing (220 built-in prompts: 24 held out, 196 pool)
        candidates=4,
        pool_factor=2,
        annotations_per_task=3,
        max_new_tokens=40,
        simulate=True,
        simulated_annotators=3,
        gold=gold,
        eval_samples=3,
        reward_train={"epochs": 2, "learning_rate": 1e-4, "batch_size": 32},
        policy_method="grpo",
        # On AVX2 kernels a GRPO step of 4 x 4 answers of 48 tokens took 35 s: 12 steps of 3 x 4 of 40 fit 3 rounds.
        policy_train={"max_steps": 12, "prompts_per_step": 3, "num_generations": 4, "learning_rate": 1e-3,
                      "beta": 0.02, "max_new_tokens": 40},
        # KL is to the base, so it adds up over rounds (13.4, then 17.9 per sample); training stops at 80% of it.
        gates=Gates(min_win_rate=0.55, max_kl=45.0),
        service_retry_s=300.0,
    )  # fmt: skip


def _fresh(root: Path) -> None:
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise SystemExit(f"{root} exists and was not made by the demo; choose another --workdir")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).touch()


def run_demo(workdir: Path, iterations: int = 3, samples: int = 4, gold: str = DEMO_GOLD) -> int:
    load_function(gold, "gold scorer")  # a wrong name fails here, not after the services have started
    began = time.monotonic()
    root = Path(workdir).resolve()
    _fresh(root)
    progress = RichLoopProgress(iterations) if sys.stderr.isatty() else LoopProgress()  # bars only on a terminal
    say = progress.message
    with LocalStack(root, progress=say) as stack:
        try:
            stack.labelstudio()
            say("Label Studio is up; starting the reward service (MiniLM) and the policy service (SmolLM2-135M)")
            reward = stack.reward("minilm")
            policy = stack.policy("smollm2", "--gold-scorer", gold, timeout_s=900)
            say(f"services up: reward {reward.target} (metrics {reward.http}/metrics), policy {policy.target}")
            loop = RlhfLoop(demo_config(root, reward.target, policy.target, iterations, gold), progress=progress)
            loop.setup()
            loop.execute()
            report = loop.report(root / "report", samples=samples, wall_time_s=time.monotonic() - began)
        finally:
            progress.close()
    summary = {"gold": gold} | {
        key: report[key] for key in ("gold_win_rate", "gold_win_rate_ci", "wall_time_s", "targets_met")
    }
    print(json.dumps(summary, indent=2))
    print(f"report: {root / 'report' / 'report.html'} (and report.md, report.json, *.png)")
    return 0
