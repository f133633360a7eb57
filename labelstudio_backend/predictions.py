"""The reward model's ranking of a task's candidates, in the shape of the project's template."""

from __future__ import annotations

import itertools

from labelstudio_backend.templates import Template, ranking_result
from services.reward.ranking import RankResult


def prediction(template: Template, candidate_ids: list[str], ranked: RankResult) -> dict:
    """One /predict result: the ranking as a pre-annotation, a confidence score and the reward version.

    The confidence is the mean Bradley-Terry probability that each candidate
    beats the next one in the predicted order (for Pairwise: of the choice).
    """
    order = ranked.order
    p = ranked.probabilities
    confidence = sum(p[a][b] for a, b in itertools.pairwise(order)) / max(len(order) - 1, 1)
    return {
        "result": ranking_result(template, candidate_ids, order),
        "score": confidence,
        "model_version": ranked.version,
    }
