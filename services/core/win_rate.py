"""The one win-rate: a higher score wins, an equal one counts half."""

from __future__ import annotations

from collections.abc import Sequence


def win(candidate: float, baseline: float) -> float:
    """1 when the candidate scores higher, 0.5 on a tie, 0 otherwise."""
    return 1.0 if candidate > baseline else 0.5 if candidate == baseline else 0.0


def win_rate(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Mean of `win` over paired scores (the same prompt, or the same preference pair)."""
    return sum(win(c, b) for c, b in zip(candidate, baseline, strict=True)) / len(candidate)
