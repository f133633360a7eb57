"""Promotion gates: whether an iteration's new versions replace the active ones, and why not."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gates:
    min_rm_accuracy: float = 0.6  # held-out pair accuracy of the new reward model
    max_rm_accuracy_drop: float = 0.02  # how much worse than the active reward model it may be (epsilon)
    min_win_rate: float = 0.55  # new policy over the active one, by the reward service
    max_kl: float = 10.0  # KL of the new policy's samples to the reference (nats per sample)


def reward_gate(accuracy: float, previous: float | None, gates: Gates) -> list[str]:
    """Reasons the new reward model may not serve (empty: promote it before the policy trains on it)."""
    reasons = []
    if not accuracy >= gates.min_rm_accuracy:
        reasons.append(f"reward-model accuracy {accuracy:.3f} < {gates.min_rm_accuracy}")
    if previous is not None and not accuracy >= previous - gates.max_rm_accuracy_drop:
        reasons.append(
            f"reward-model accuracy {accuracy:.3f} fell more than {gates.max_rm_accuracy_drop} below {previous:.3f}"
        )
    return reasons


def policy_gate(win_rate: float, kl: float, gates: Gates) -> list[str]:
    """Reasons the new policy may not replace the active one (empty: promote)."""
    reasons = []
    if not win_rate >= gates.min_win_rate:
        reasons.append(f"policy win-rate {win_rate:.3f} < {gates.min_win_rate}")
    if not (math.isfinite(kl) and kl <= gates.max_kl):
        reasons.append(f"KL to the reference {kl:.3f} over the budget {gates.max_kl}")
    return reasons
