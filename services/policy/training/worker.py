"""The training process the policy service launches (directly, or under `accelerate launch`).

Training runs outside the service so Generate keeps answering, a crash
cannot take the server down, and several processes can share one run.
It reads its TrainSpec, trains, saves the result into the spec's output
directory, and reports progress as JSON lines on stdout (main process only).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from services.core.env import REWARD_TOKEN_ENV
from services.policy.remote_reward import RemoteReward, RewardServiceUnavailableError
from services.policy.training.events import emit
from services.policy.training.orphan_guard import die_with_parent
from services.policy.training.spec import TrainSpec


def run(spec: TrainSpec) -> dict:
    """Train as the spec says and save the result (main process); returns the run's summary."""
    import torch
    from accelerate import PartialState

    # cpu=True makes a torchrun-launched group use gloo (MULTI_CPU) when there is no GPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    is_main = state.is_main_process
    config = spec.config
    reward_versions: list[str] = []
    if config.method in ("grpo", "rloo"):
        from services.policy.training.online import train_online

        reward = RemoteReward(
            spec.reward_target, token=os.environ.get(REWARD_TOKEN_ENV) or None, tls_ca=spec.reward_tls_ca,
            conservative_lambda=config.conservative_lambda,
        )  # fmt: skip
        trainer = train_online(spec.base_model, spec.init_adapter, spec.prompts, config, reward, spec.run_dir, is_main)
        reward_versions = sorted(reward.versions)
    else:
        from services.policy.training.dpo import train_dpo

        trainer = train_dpo(spec.base_model, spec.init_adapter, spec.pairs, config, spec.run_dir, is_main)
    if is_main:
        trainer.model.save_pretrained(spec.output_dir)
        if not config.use_lora and spec.init_adapter is None:
            trainer.processing_class.save_pretrained(spec.output_dir)
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
    """Run the spec named on the command line; exit 3 when the reward service is unavailable."""
    # Under accelerate, this process's parent is the launcher; it must not outlive it either.
    die_with_parent(os.getppid())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, once per step
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = TrainSpec.read(Path(sys.argv[1]))
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
