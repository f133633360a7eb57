"""Promotion gates: whether an iteration's new versions replace the active ones, and why."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gates:
    min_rm_accuracy: float = 0.6  # held-out pair accuracy of the new reward model
    max_rm_accuracy_drop: float = 0.02  # how much worse than the previous reward model it may be (epsilon)
    min_win_rate: float = 0.55  # new policy over the previous one, by the reward service
    max_kl: float = 10.0  # KL of the new policy's samples to the reference (nats per sample)


@dataclass(frozen=True)
class IterationMetrics:
    rm_accuracy: float
    previous_rm_accuracy: float | None
    win_rate: float
    kl: float


@dataclass(frozen=True)
class Decision:
    promote_reward: bool
    promote_policy: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "promote" if self.promote_policy else "rollback"


def decide(metrics: IterationMetrics, gates: Gates) -> Decision:
    """Apply every gate; the reasons list each one that failed (empty when all passed).

    The policy was trained against the new reward model, so it can only be
    promoted when that reward model passes too.
    """
    reasons = []
    if not metrics.rm_accuracy >= gates.min_rm_accuracy:
        reasons.append(f"reward-model accuracy {metrics.rm_accuracy:.3f} < {gates.min_rm_accuracy}")
    previous = metrics.previous_rm_accuracy
    if previous is not None and not metrics.rm_accuracy >= previous - gates.max_rm_accuracy_drop:
        reasons.append(
            f"reward-model accuracy {metrics.rm_accuracy:.3f} fell more than {gates.max_rm_accuracy_drop} "
            f"below the previous {previous:.3f}"
        )
    promote_reward = not reasons
    if not metrics.win_rate >= gates.min_win_rate:
        reasons.append(f"policy win-rate {metrics.win_rate:.3f} < {gates.min_win_rate}")
    if not (math.isfinite(metrics.kl) and metrics.kl <= gates.max_kl):
        reasons.append(f"KL to the reference {metrics.kl:.3f} over the budget {gates.max_kl}")
    return Decision(promote_reward, promote_reward and not reasons, reasons)
