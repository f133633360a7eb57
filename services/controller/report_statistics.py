"""The statistics of the loop's report: gold win-rates with bootstrap intervals, and text diversity."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from services.core.win_rate import win


def pairwise_win_rate(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Share of (candidate sample, baseline sample) pairs the candidate wins, ties counting half."""
    if not candidate or not baseline:
        raise ValueError("a win-rate needs samples on both sides")
    return sum(win(c, b) for c in candidate for b in baseline) / (len(candidate) * len(baseline))


def per_prompt_win_rates(candidate: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]]) -> list[float]:
    """One win-rate per prompt over that prompt's samples: the unit the bootstrap resamples."""
    if len(candidate) != len(baseline):
        raise ValueError(f"{len(candidate)} candidate prompts vs {len(baseline)} baseline prompts")
    return [pairwise_win_rate(c, b) for c, b in zip(candidate, baseline, strict=True)]


def bootstrap_interval(
    values: Sequence[float], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (prompts resampled with replacement)."""
    draws = bootstrap_draws(values, statistics.fmean, resamples, seed)
    tail = (1 - level) / 2
    return draws[int(tail * (resamples - 1))], draws[int((1 - tail) * (resamples - 1))]


def bootstrap_draws(
    units: Sequence[Any], statistic: Callable[[Sequence[Any]], float], resamples: int = 2000, seed: int = 0
) -> list[float]:
    """The statistic of `resamples` resamples of the units (with replacement), sorted: its quantiles are bounds."""
    if not units:
        raise ValueError("a bootstrap needs at least one value")
    rng = random.Random(seed)
    return sorted(statistic(rng.choices(units, k=len(units))) for _ in range(resamples))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (lower-cased words): falls when outputs grow alike."""
    grams = [tuple(words[i : i + n]) for words in (t.lower().split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
