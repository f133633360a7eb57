"""A gate that asks people: pairwise tasks, the new policy against the active one, sides shuffled.

InstructGPT and Llama 2 decided releases by human preference, not by their
reward model's opinion: without a gold scorer the proxy win-rate alone lets a
reward-hacking policy through. The tasks live in a Label Studio project of
their own, so they never enter reward-model training.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from labelstudio_backend.sync import exported_preferences
from labelstudio_backend.templates import TEMPLATES, candidate_data

EVALUATION_TEMPLATE = TEMPLATES["pairwise"]
JUDGES = ("reward_model", "people")


def evaluation_project_title(project_title: str) -> str:
    return f"{project_title} · policy evaluation"


def task_key(number: int, prompt: str) -> str:
    return hashlib.sha256(f"evaluation {number} {prompt}".encode()).hexdigest()[:16]


def evaluation_tasks(
    number: int,
    prompts: Sequence[str],
    new_texts: Sequence[str],
    active_texts: Sequence[str],
    versions: tuple[str, str],
    rng: random.Random,
) -> list[dict]:
    """One pairwise task per prompt; which side holds the new policy is drawn per task and kept in its data."""
    new_version, active_version = versions
    tasks = []
    for prompt, new, active in zip(prompts, new_texts, active_texts, strict=True):
        new_index = rng.randrange(2)
        bodies = [new, active] if new_index == 0 else [active, new]
        provenance = {"policy_version": f"{new_version} vs {active_version}"}
        evaluation = {"new_version": new_version, "active_version": active_version, "new_index": new_index}
        tasks.append({**candidate_data(prompt, bodies, EVALUATION_TEMPLATE, provenance), "evaluation": evaluation,
                      "iteration": number, "key": task_key(number, prompt)})  # fmt: skip
    return tasks


@dataclass(frozen=True)
class Judged:
    """One evaluation task: the answers, which is new, and the people's votes for the new one (1, 0.5, 0)."""

    prompt: str
    new: str
    active: str
    votes: tuple[float, ...]

    @property
    def people(self) -> float | None:
        """The people's share for the new answer; None before anyone answered."""
        return sum(self.votes) / len(self.votes) if self.votes else None


def judged_tasks(tasks: Sequence[dict], project_id: int, label_config: str) -> list[Judged]:
    """Each exported task's votes, from its submitted (not skipped, valid) annotations."""
    votes: dict[int, list[float]] = {}
    for preference in exported_preferences(list(tasks), project_id, label_config):
        task = next(t for t in tasks if t["id"] == preference.task_id)
        best = preference.ranking.tiers[0]
        # A tie ("Equally good" or "Both bad": both answers in one tier) counts as half a win: the person
        # looked and saw no difference, which is evidence the new policy is no worse, not a missing answer.
        vote = 0.5 if len(best) == 2 else float(best[0] == task["data"]["evaluation"]["new_index"])
        votes.setdefault(preference.task_id, []).append(vote)
    judged = []
    for task in tasks:
        data = task["data"]
        new_index = data["evaluation"]["new_index"]
        bodies = [c["body"] for c in data["candidates"]]
        judged.append(
            Judged(data["prompt"], bodies[new_index], bodies[1 - new_index], tuple(votes.get(task["id"], [])))
        )
    return judged


def _side(share: float | None) -> int | None:
    """+1 the new answer is preferred, -1 the active one, None for a tie or no opinion."""
    if share is None or share == 0.5:
        return None
    return 1 if share > 0.5 else -1


def judges_agreement(opinions: dict[str, Sequence[float | None]]) -> dict[str, float | None]:
    """For each two judges, the share of tasks where both have a side and pick the same one."""
    agreement = {}
    for (a, first), (b, second) in itertools.combinations(opinions.items(), 2):
        both = [(_side(x), _side(y)) for x, y in zip(first, second, strict=True)]
        both = [(x, y) for x, y in both if x is not None and y is not None]
        agreement[f"{a}_{b}"] = sum(x == y for x, y in both) / len(both) if both else None
    return agreement
