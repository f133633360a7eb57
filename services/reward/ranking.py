"""What Rank returns: scores, the order, and Bradley-Terry pairwise probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RankResult:
    scores: list[float]
    order: list[int]  # candidate indices, best first
    probabilities: list[list[float]]  # [i][j] = P(candidate i preferred to j)
    version: str
    spreads: list[float] = field(default_factory=list)  # an ensemble's per-candidate spread; empty for one model


def rank_candidates(scores: Sequence[float], version: str, spreads: Sequence[float] = ()) -> RankResult:
    """Order by score (ties keep input order); P(i beats j) = sigmoid(s_i - s_j)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    probabilities = [[1.0 / (1.0 + math.exp(min(sj - si, 700.0))) for sj in scores] for si in scores]
    return RankResult(list(scores), order, probabilities, version, list(spreads))
