"""The reward model's ranking of a task's candidates, in the shape of the project's template."""

from __future__ import annotations

import itertools

from labelstudio_backend.templates import Template
from services.reward.ranking import RankResult


def prediction(template: Template, candidate_ids: list[str], ranked: RankResult) -> dict:
    """One /predict result: the ranking as a pre-annotation, a confidence score and the reward version.

    The confidence is the mean Bradley-Terry probability that each candidate
    beats the next one in the predicted order (for Pairwise: of the choice).
    """
    order = ranked.order
    p = ranked.probabilities
    confidence = sum(p[a][b] for a, b in itertools.pairwise(order)) / max(len(order) - 1, 1)
    if template.pairwise:
        value = {"selected": "left" if order[0] == 0 else "right"}
        region = {"from_name": "comparison", "to_name": "answer1,answer2", "type": "pairwise", "value": value}
    elif template.buckets:
        # Equal shares of the order, best first; the last bucket takes the remainder.
        share = max(1, len(order) // len(template.buckets))
        buckets = {name: [] for name in template.buckets}
        for position, index in enumerate(order):
            name = template.buckets[min(position // share, len(template.buckets) - 1)]
            buckets[name].append(candidate_ids[index])
        region = {"from_name": "rank", "to_name": "candidates", "type": "ranker", "value": {"ranker": buckets}}
    else:
        ranked_ids = [candidate_ids[i] for i in order]
        region = {
            "from_name": "rank",
            "to_name": "candidates",
            "type": "ranker",
            "value": {"ranker": {"rank": ranked_ids}},
        }
    return {"result": [region], "score": confidence, "model_version": ranked.version}
