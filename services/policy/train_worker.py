"""The training process the policy service launches (directly, or under `accelerate launch`).

Training runs outside the service so Generate keeps answering, a crash
cannot take the server down, and several processes can share one run.
It reads a JSON spec, trains, saves the result into the spec's output
directory, and reports progress as JSON lines on stdout (main process only).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

from services.core.env import REWARD_TOKEN_ENV
from services.core.rankings import PreferencePair
from services.policy.orphan_guard import die_with_parent
from services.policy.remote_reward import RemoteReward, RewardServiceUnavailableError
from services.policy.train_config import PolicyTrainConfig
from services.policy.train_setup import emit


def run(spec: dict) -> dict:
    import torch
    from accelerate import PartialState

    # cpu=True makes a torchrun-launched group use gloo (MULTI_CPU) when there is no GPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    is_main = state.is_main_process
    config = PolicyTrainConfig(**spec["config"])
    base = Path(spec["base_model"])
    init_adapter = Path(spec["init_adapter"]) if spec.get("init_adapter") else None
    run_dir, output_dir = Path(spec["run_dir"]), Path(spec["output_dir"])
    reward_versions: list[str] = []
    if config.method in ("grpo", "rloo"):
        from services.policy.online_training import train_online

        reward = RemoteReward(
            spec["reward_target"],
            token=os.environ.get(REWARD_TOKEN_ENV) or None,
            tls_ca=Path(spec["reward_tls_ca"]) if spec.get("reward_tls_ca") else None,
        )
        trainer = train_online(base, init_adapter, spec["prompts"], config, reward, run_dir, is_main)
        reward_versions = sorted(reward.versions)
    else:
        from services.policy.dpo_training import train_dpo

        pairs = [PreferencePair(**p) for p in spec["pairs"]]
        trainer = train_dpo(base, init_adapter, pairs, config, run_dir, is_main)
    if is_main:
        trainer.model.save_pretrained(output_dir)
        if not config.use_lora and init_adapter is None:
            trainer.processing_class.save_pretrained(output_dir)
    history = [h for h in trainer.state.log_history if "loss" in h]
    last = history[-1] if history else {}
    return {
        "main_process": is_main,
        "processes": state.num_processes,
        "steps": trainer.state.global_step,
        "reward_versions": reward_versions,
        "final_loss": float(last.get("loss", float("nan"))),
        "final_reward_mean": float(last.get("reward", float("nan"))),
        "final_kl": float(last.get("kl", float("nan"))),
    }


def main() -> int:
    # Under accelerate, this process's parent is the launcher; it must not outlive it either.
    die_with_parent(os.getppid())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, once per step
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        summary = run(spec)
    except RewardServiceUnavailableError as error:
        emit({"type": "error", "kind": "unavailable", "message": str(error)})
        return 3
    except Exception as error:
        emit({"type": "error", "kind": "failed", "message": f"{type(error).__name__}: {error}"})
        raise
    if summary.pop("main_process"):
        emit({"type": "done", **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
