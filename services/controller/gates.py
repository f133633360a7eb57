"""Promotion gates: whether an iteration's new versions replace the active ones, and why not."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Gates:
    # The reward gate compares the new and the active reward model on the same held-out comparisons
    # (this round's prompts): a fixed accuracy would ignore that later rounds' pairs are harder.
    max_rm_accuracy_drop: float = 0.02  # how much worse than the active reward model the new one may be (epsilon)
    min_rm_agreement_share: float = 0.9  # of the annotators' own pairwise agreement on those comparisons
    min_rm_accuracy: float = 0.6  # used instead when that agreement is unknown (one annotation per task)
    min_win_rate: float = 0.55  # new policy over the active one, by its judge (the reward model, or people)
    max_kl: float = 10.0  # KL of the new policy's samples to the reference (nats per sample)


def reward_gate(accuracy: float, active_accuracy: float, agreement: float | None, gates: Gates) -> list[str]:
    """Reasons the new reward model may not serve (empty: promote it before the policy trains on it).

    All three figures are measured on the same held-out comparisons.
    """
    if not math.isfinite(accuracy):
        return ["no held-out comparisons this round to judge the new reward model on"]
    reasons = []
    if not accuracy >= active_accuracy - gates.max_rm_accuracy_drop:
        reasons.append(
            f"reward-model accuracy {accuracy:.3f} is more than {gates.max_rm_accuracy_drop} below the active "
            f"model's {active_accuracy:.3f} on the same comparisons"
        )
    if agreement is not None and math.isfinite(agreement):
        needed = gates.min_rm_agreement_share * agreement
        if not accuracy >= needed:
            reasons.append(
                f"reward-model accuracy {accuracy:.3f} < {gates.min_rm_agreement_share} x the annotators' "
                f"agreement {agreement:.3f} on the same comparisons"
            )
    elif not accuracy >= gates.min_rm_accuracy:
        reasons.append(f"reward-model accuracy {accuracy:.3f} < {gates.min_rm_accuracy} (annotator agreement unknown)")
    return reasons


def policy_gate(win_rate: float, kl: float, gates: Gates, judge: str = "") -> list[str]:
    """Reasons the new policy may not replace the active one (empty: promote); `judge` names who judged."""
    reasons = []
    if not win_rate >= gates.min_win_rate:
        by = f" by {judge}" if judge else ""
        reasons.append(f"policy win-rate{by} {win_rate:.3f} < {gates.min_win_rate}")
    if not (math.isfinite(kl) and kl <= gates.max_kl):
        reasons.append(f"KL to the reference {kl:.3f} over the budget {gates.max_kl}")
    return reasons
