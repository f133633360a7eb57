"""Promotion gates: whether an iteration's new versions replace the active ones, and why not."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.controller.report_statistics import bootstrap_draws


@dataclass(frozen=True)
class Gates:
    # The reward gate compares the new and the active reward model on the same held-out comparisons
    # (this round's prompts): a fixed accuracy would ignore that later rounds' pairs are harder.
    max_rm_accuracy_drop: float = 0.02  # how much worse than the active reward model the new one may be (epsilon)
    min_rm_agreement_share: float = 0.9  # of the annotators' own pairwise agreement on those comparisons
    min_rm_accuracy: float = 0.6  # used instead when that agreement is unknown (one annotation per task)
    # A few held-out prompts make noisy figures: a rule is failed only when the bootstrap bound (over
    # prompts) at this confidence fails it too. 0.5 judges by the point estimates alone.
    rm_gate_confidence: float = 0.9
    min_win_rate: float = 0.55  # new policy over the active one, by its judge (the reward model, or people)
    max_kl: float = 10.0  # KL of the new policy's samples to the reference (nats per sample)


@dataclass(frozen=True)
class PromptTally:
    """One held-out prompt's comparisons: the unit the reward gate's bootstrap resamples."""

    pairs: int  # annotators' pairs (one per annotator and pair of candidates)
    new_correct: float  # pairs the new reward model orders as the annotator did, ties half
    active_correct: float  # the same for the active reward model
    agreed: int = 0  # pairs of annotators who ordered a pair of candidates the same way
    compared: int = 0  # pairs of annotators who both ordered a pair of candidates


@dataclass(frozen=True)
class HeldoutFigures:
    accuracy: float
    active_accuracy: float
    agreement: float | None  # None: no pair was ordered by two annotators


def heldout_figures(tallies: Sequence[PromptTally]) -> HeldoutFigures:
    """Both models' accuracy and the annotators' agreement, pooled over the prompts (NaN without pairs)."""
    pairs = sum(t.pairs for t in tallies)
    compared = sum(t.compared for t in tallies)
    return HeldoutFigures(
        accuracy=sum(t.new_correct for t in tallies) / pairs if pairs else math.nan,
        active_accuracy=sum(t.active_correct for t in tallies) / pairs if pairs else math.nan,
        agreement=sum(t.agreed for t in tallies) / compared if compared else None,
    )


def reward_gate(tallies: Sequence[PromptTally], gates: Gates, seed: int = 0) -> list[str]:
    """Reasons the new reward model may not serve (empty: promote it before the policy trains on it).

    Every figure comes from the same held-out comparisons. Each rule holds unless
    its point estimate fails it *and* so does the upper bootstrap bound at
    `rm_gate_confidence`: ten held-out prompts cannot tell 0.70 from 0.72.
    """
    figures = heldout_figures(tallies)
    if not math.isfinite(figures.accuracy):
        return ["no held-out comparisons this round to judge the new reward model on"]

    def bound(margin: Callable[[HeldoutFigures], float]) -> float:
        draws = bootstrap_draws(tallies, lambda sample: margin(heldout_figures(sample)), seed=seed)
        finite = [d for d in draws if math.isfinite(d)]  # a resample without annotator overlap says nothing
        return finite[min(len(finite) - 1, int(gates.rm_gate_confidence * len(finite)))] if finite else math.nan

    def failed(margin: Callable[[HeldoutFigures], float]) -> str:
        """Empty when the rule holds; else by how much it fails, and by how much at the least."""
        point = margin(figures)
        if point >= 0:
            return ""
        upper = bound(margin)
        if upper >= 0:
            return ""
        return f": short by {-point:.3f}, by at least {-upper:.3f} at {gates.rm_gate_confidence:.0%} confidence"

    reasons = []
    drop = failed(lambda f: f.accuracy - f.active_accuracy + gates.max_rm_accuracy_drop)
    if drop:
        reasons.append(
            f"reward-model accuracy {figures.accuracy:.3f} is more than {gates.max_rm_accuracy_drop} below the "
            f"active model's {figures.active_accuracy:.3f} on the same comparisons{drop}"
        )
    if figures.agreement is not None:
        share = gates.min_rm_agreement_share
        short = failed(lambda f: f.accuracy - share * (f.agreement if f.agreement is not None else math.nan))
        if short:
            reasons.append(
                f"reward-model accuracy {figures.accuracy:.3f} < {share} x the annotators' agreement "
                f"{figures.agreement:.3f} on the same comparisons{short}"
            )
    else:
        low = failed(lambda f: f.accuracy - gates.min_rm_accuracy)
        if low:
            reasons.append(
                f"reward-model accuracy {figures.accuracy:.3f} < {gates.min_rm_accuracy} (annotator agreement "
                f"unknown){low}"
            )
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
