"""The training process the policy service launches (directly, or under torchrun), on its node or on others.

Training runs outside the service so Generate keeps answering, a crash
cannot take the server down, and several processes, on several nodes, can
share one run. The processes agree on the run's TrainSpec (run_group.py),
train, and global rank 0 saves the result into the spec's output directory;
one process on the service's node reports progress as JSON lines on stdout.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from services.core.env import REWARD_TOKEN_ENV
from services.policy.remote_reward import RemoteReward, RewardServiceUnavailableError
from services.policy.training.callbacks import log_to_stderr
from services.policy.training.events import emit
from services.policy.training.orphan_guard import die_with_parent
from services.policy.training.run_group import join_run, node_count, node_rank
from services.policy.training.spec import TrainSpec


def run(spec: TrainSpec, state, reports: bool) -> dict:
    """Train as the spec says and save the result (global rank 0); returns the run's summary."""
    config = spec.config
    reward_versions: list[str] = []
    if config.method in ("grpo", "rloo"):
        from services.policy.training.online import train_online

        reward = RemoteReward(
            spec.reward_target, token=os.environ.get(REWARD_TOKEN_ENV) or None, tls_ca=spec.reward_tls_ca,
            conservative_lambda=config.conservative_lambda,
        )  # fmt: skip
        trainer = train_online(
            spec.base_model, spec.init_adapter, spec.prompts, config, reward, spec.run_dir, spec.strategy, reports
        )
        reward_versions = sorted(reward.versions)
    else:
        from services.policy.training.dpo import train_dpo

        trainer = train_dpo(
            spec.base_model, spec.init_adapter, spec.pairs, config, spec.run_dir, spec.strategy, reports
        )
    # Under FSDP each process holds a shard of the weights: gathering them takes every process.
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if state.is_main_process:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(spec.output_dir, state_dict=state_dict)
        if not config.use_lora and spec.init_adapter is None:
            trainer.processing_class.save_pretrained(spec.output_dir)
    state.wait_for_everyone()  # rank 0 may be on another node than the process that reports the run as done
    history = [h for h in trainer.state.log_history if "loss" in h]
    last = history[-1] if history else {}
    return {
        "processes": state.num_processes,
        "nodes": node_count(),
        "steps": trainer.state.global_step,
        "reward_versions": reward_versions,
        "final_loss": float(last.get("loss", float("nan"))),
        "final_reward_mean": float(last.get("reward", float("nan"))),
        "final_kl": float(last.get("kl", float("nan"))),
    }


def main() -> int:
    """Train the spec named on the command line (the service's node) or sent by the group; exit 3 without reward."""
    # Under torchrun, this process's parent is its launcher; it must not outlive it either.
    die_with_parent(os.getppid())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, once per step
    import torch
    from accelerate import PartialState
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None  # `rlhf-loop train node` starts it without one
    try:
        # cpu=True makes a torchrun-launched group use gloo (MULTI_CPU) when there is no GPU.
        state = PartialState(cpu=not torch.cuda.is_available())
        log_to_stderr(f"training process {state.process_index} of {state.num_processes} (node {node_rank()} of "
                      f"{node_count()}) joined its group")  # fmt: skip
        spec = join_run(state, spec_path)
        # The service reads the stdout of its own node's processes; the first of them reports.
        reports = spec_path is not None and state.local_process_index == 0
        summary = run(spec, state, reports)
    except RewardServiceUnavailableError as error:
        emit({"type": "error", "kind": "unavailable", "message": str(error)})
        return 3
    except Exception as error:
        emit({"type": "error", "kind": "failed", "message": f"{type(error).__name__}: {error}"})
        raise
    if reports:
        emit({"type": "done", **summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
