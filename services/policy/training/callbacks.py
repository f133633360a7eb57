"""TrainerCallbacks every policy run may add: progress events for the service, and the KL budget."""

from __future__ import annotations

import statistics
import sys
import time
from collections import deque

from services.policy.training.events import emit


def progress_callback(resumed: bool, reports: bool):
    """A TrainerCallback that emits a progress event per logged step (in the one process that reports)."""
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
            if not logs or "loss" not in logs or not reports:
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


def log_to_stderr(message: str) -> None:
    """Stderr is the worker's log file; stdout carries only events."""
    print(message, file=sys.stderr, flush=True)
