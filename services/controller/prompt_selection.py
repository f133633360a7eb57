"""Which prompts go to the annotators: where the reward model is least sure, plus a random share.

"uncertainty": the mean, over a prompt's candidate pairs, of 1 - |2p - 1|
with p the reward model's Bradley-Terry probability: 1 when it cannot tell
two candidates apart, 0 when it is certain. "disagreement" (an ensemble
reward model): the mean spread of its members' scores over the candidates --
epistemic uncertainty, in the spirit of BAL-PM (Melo et al. 2024), which a
single model's probabilities cannot tell from the noise in human labels. A
random share keeps coverage, so the reward model also sees what it thinks
it already knows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.errors import InvalidRequestError

STRATEGIES = ("uncertainty", "disagreement", "random")


@dataclass(frozen=True)
class Selected:
    index: int  # position in the candidate pool
    strategy: str  # "uncertainty", "disagreement" or "random": recorded with the prompt
    uncertainty: float  # the value it was ranked by


def order_uncertainty(probabilities: Sequence[Sequence[float]]) -> float:
    k = len(probabilities)
    values = [1 - abs(2 * probabilities[i][j] - 1) for i in range(k) for j in range(i + 1, k)]
    return sum(values) / len(values) if values else 0.0


def mean_spread(spreads: Sequence[float]) -> float:
    """An ensemble's disagreement on a prompt's candidates."""
    return sum(spreads) / len(spreads)


def select_prompts(
    uncertainties: Sequence[float], n: int, strategy: str, random_share: float, rng: random.Random
) -> list[Selected]:
    """`n` pool positions: the highest values (uncertainty or disagreement), `random_share` of them at random."""
    if strategy not in STRATEGIES:
        raise InvalidRequestError(f"unknown selection strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not 0 <= random_share <= 1:
        raise InvalidRequestError(f"random_share must be in [0, 1], got {random_share}")
    n = min(n, len(uncertainties))
    n_random = n if strategy == "random" else round(n * random_share)
    by_uncertainty = sorted(range(len(uncertainties)), key=lambda i: (-uncertainties[i], i))
    chosen = [Selected(i, strategy, uncertainties[i]) for i in by_uncertainty[: n - n_random]]
    rest = [i for i in range(len(uncertainties)) if i not in {c.index for c in chosen}]
    chosen += [Selected(i, "random", uncertainties[i]) for i in rng.sample(rest, n_random)]
    return chosen
