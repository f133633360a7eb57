"""An ensemble of reward heads on one backbone, each head trained on its own bootstrap of the data.

Serving an ensemble costs one forward pass (the heads are the outputs of one
linear layer), yet its members disagree where the data said little, and that
spread is what uncertainty-weighted RLHF needs (Coste et al. 2024). Members
differ by their random initialisation and by online bagging (Oza & Russell
2001): every example counts Poisson(1) times for each member, drawn afresh
per batch, which approximates training each member on its own bootstrap
sample without copying the data.

Pairwise and listwise losses see only differences between candidates of one
prompt, so each head's level per prompt is free, and heads would disagree on
it everywhere. A small penalty on the squared scores pins the level where
there is data (as TRL's center_rewards_coefficient, and Eisenstein et al.
2023 for reward ensembles): the heads then agree in distribution and keep
their differences out of it.
"""

from __future__ import annotations

import torch

CENTERING = 0.01  # weight of the mean squared score next to the ranking loss


class OnlineBagging:
    """Per-example, per-member Poisson(1) weights from a seeded generator (one member: no weighting)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, per_member: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Mean over members of each member's weighted mean loss, plus the centering of `scores`.

        `per_member` is (examples, members), `scores` every head's scores (items, members).
        """
        if per_member.shape[1] == 1:
            return per_member.mean()
        weights = torch.poisson(torch.ones(per_member.shape), generator=self.generator).to(per_member)
        ranking = ((per_member * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)).mean()
        return ranking + CENTERING * scores.float().pow(2).mean()
