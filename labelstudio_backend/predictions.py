"""The reward model's ranking of a task's candidates, in the shape of the project's template."""

from __future__ import annotations

import hashlib
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


def is_pre_ranked(project_id: int | None, task_id: object, share: float) -> bool:
    """Whether this task opens with the reward model's pre-ranking: a fixed `share` of tasks, chosen by id.

    The choice hashes the ids, so a task keeps its answer on every request and
    the pre-ranked tasks are a random-like sample: a controlled experiment.
    """
    if share >= 1.0:
        return True
    if share <= 0.0 or isinstance(task_id, bool) or not isinstance(task_id, int):
        return False
    digest = hashlib.sha256(f"{project_id}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
