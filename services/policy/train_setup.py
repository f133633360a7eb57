"""What GRPO, RLOO and DPO runs share: the trainable model, LoRA, common TRL arguments, progress events."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import torch

from services.policy.policy_model import load_causal_lm, pick_device
from services.policy.train_config import PolicyTrainConfig

LORA_TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def emit(event: dict) -> None:
    """One JSON line on stdout: how the training worker reports to the policy service."""
    print(json.dumps(event), flush=True)


def trainable_model(base_path: Path, init_adapter: Path | None, config: PolicyTrainConfig):
    """(model, tokenizer, peft_config): the base with a new LoRA, or with the init version's adapter trainable."""
    model, tokenizer = load_causal_lm(base_path, pick_device())
    tokenizer.padding_side = "left"
    if init_adapter is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True), tokenizer, None
    if not config.use_lora:
        return model, tokenizer, None
    from peft import LoraConfig

    peft_config = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=LORA_TARGETS.get(model.config.model_type),
    )
    return model, tokenizer, peft_config


def common_args(config: PolicyTrainConfig, run_dir: Path) -> dict:
    """TRL config fields every method sets the same way (CPU-safe precision, checkpoints, quiet logs)."""
    return {
        "output_dir": str(run_dir),
        "learning_rate": config.learning_rate,
        "max_steps": config.max_steps,
        "seed": config.seed,
        "beta": config.beta,
        "bf16": torch.cuda.is_available(),
        "gradient_checkpointing": False,
        "use_cpu": not torch.cuda.is_available(),
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
    }


def progress_callback(resumed: bool, is_main: bool):
    """A TrainerCallback that emits a progress event per logged step (main process only)."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self) -> None:
            self.step_started = time.monotonic()
            self.step_seconds = 0.0
            self.last: dict = {}

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds = time.monotonic() - self.step_started

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not is_main:
                return
            self.last = {
                "type": "progress",
                "step": state.global_step,
                "total_steps": state.max_steps,
                "loss": float(logs["loss"]),
                "reward_mean": float(logs.get("reward", logs.get("rewards/margins", float("nan")))),
                "reward_std": float(logs.get("reward_std", float("nan"))),
                "kl": float(logs.get("kl", float("nan"))),
                "step_seconds": self.step_seconds,
                "resumed": resumed,
            }
            emit(self.last)

    return _Progress()


def reference_is_base(trainer) -> None:
    """Make the trainer's reference the base model (adapter off), the one Evaluate and the KL gate measure against.

    Continuing an init version's adapter, TRL freezes a copy of it as a second
    adapter named "ref" and uses that as the reference: each iteration's KL
    penalty would then restart at zero while the policy drifts ever further
    from the base, and a KL budget could never hold across iterations.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def kl_budget_callback(target_kl: float, window: int = 3):
    """A TrainerCallback that stops training once the KL to the reference reaches `target_kl` nats per completion.

    TRL logs the per-token KL of each step's samples; times the mean completion
    length it is the per-completion KL that Evaluate reports. A step's 16-ish
    samples make a noisy estimate, so the mean of the last `window` steps decides.
    """
    from transformers import TrainerCallback

    class _KlBudget(TrainerCallback):
        def __init__(self) -> None:
            self.recent: deque[float] = deque(maxlen=window)
            self.estimate = float("nan")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "kl" not in logs or "completions/mean_length" not in logs:
                return
            self.recent.append(float(logs["kl"]) * float(logs["completions/mean_length"]))
            self.estimate = statistics.fmean(self.recent)
            if self.estimate >= target_kl and not control.should_training_stop:
                control.should_training_stop = True
                log_to_stderr(f"KL to the reference {self.estimate:.2f} reached target_kl {target_kl}: "
                              f"stopping at step {state.global_step} of {state.max_steps}")  # fmt: skip

    return _KlBudget()


def last_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return checkpoints[-1] if checkpoints else None


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
