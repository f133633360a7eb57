"""Label Studio annotation results -> rankings with ties, validated against the task's candidates.

Label Studio does not check results against the labeling config, so every id
is checked here; a result that does not fit is rejected with the reason (nor
does it stop a Pairwise annotator from choosing a side and a tie at once).
Ties: members of one bucket, and a Pairwise tie choice, share a tier.
"""

from __future__ import annotations

from collections.abc import Sequence

from labelstudio_backend.templates import TIE_CHOICES, TIE_CHOICES_NAME, Template
from services.core.errors import InvalidRequestError
from services.core.rankings import Ranking


class ResultRejectedError(InvalidRequestError):
    """The annotation's result does not fit the task (unknown ids, duplicates, wrong shape)."""


def task_candidates(task_data: dict) -> tuple[list[str], list[str]]:
    """(ids, bodies) of the task's candidates; ResultRejectedError when the task has none."""
    candidates = task_data.get("candidates") if isinstance(task_data, dict) else None
    if not isinstance(candidates, list) or len(candidates) < 2:
        raise ResultRejectedError("the task has fewer than 2 candidates")
    ids, bodies = [], []
    for c in candidates:
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("body"), str):
            raise ResultRejectedError("task candidates must be objects with string id and body")
        ids.append(c["id"])
        bodies.append(c["body"])
    return ids, bodies


def _index_tiers(lists: Sequence[object], ids: list[str]) -> tuple[tuple[int, ...], ...]:
    position = {cid: i for i, cid in enumerate(ids)}
    seen: set[str] = set()
    tiers = []
    for items in lists:
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ResultRejectedError("ranker lists must be lists of candidate ids")
        for cid in items:
            if cid not in position:
                raise ResultRejectedError(f"unknown candidate id {cid!r} (task has {', '.join(ids)})")
            if cid in seen:
                raise ResultRejectedError(f"candidate id {cid!r} appears twice")
            seen.add(cid)
        if items:
            tiers.append(tuple(position[cid] for cid in items))
    return tuple(tiers)


def _pairwise_tiers(result: list) -> tuple[tuple[int, ...], ...]:
    """A side (left/right) wins; a tie choice ("Equally good", "Both bad") puts both in one tier: no pair."""
    sides = [r for r in result if isinstance(r, dict) and r.get("type") == "pairwise"]
    ties = [
        r
        for r in result
        if isinstance(r, dict) and r.get("type") == "choices" and r.get("from_name") == TIE_CHOICES_NAME
    ]
    if sides and ties:
        raise ResultRejectedError("a pairwise answer picks a side or a tie, not both (unselect one of them)")
    if len(sides) + len(ties) != 1:
        raise ResultRejectedError(f"expected one pairwise or tie result, found {len(sides) + len(ties)}")
    value = (sides or ties)[0].get("value")
    if not isinstance(value, dict):
        raise ResultRejectedError("result value must be an object")
    if ties:
        choices = value.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or choices[0] not in TIE_CHOICES:
            raise ResultRejectedError(f"a tie must be one of {', '.join(TIE_CHOICES)}, got {choices!r}")
        return ((0, 1),)
    selected = value.get("selected")
    if selected not in ("left", "right"):
        raise ResultRejectedError(f"pairwise selection must be 'left' or 'right', got {selected!r}")
    winner = 0 if selected == "left" else 1
    return ((winner,), (1 - winner,))


def _ranker_tiers(result: list, ids: list[str], template: Template) -> tuple[tuple[int, ...], ...]:
    regions = [r for r in result if isinstance(r, dict) and r.get("type") == "ranker"]
    if len(regions) != 1:
        raise ResultRejectedError(f"expected one ranker result, found {len(regions)}")
    value = regions[0].get("value")
    ranker = value.get("ranker") if isinstance(value, dict) else None
    if not isinstance(ranker, dict) or len(ranker) == 0:
        raise ResultRejectedError("ranker result must be an object of lists")
    if template.buckets:
        unknown = set(ranker) - {"_", *template.buckets}
        if unknown:
            raise ResultRejectedError(f"unknown bucket(s) {sorted(unknown)}")
        # Bucket members tie; "_" (left unsorted) is unranked, yet its ids must still be real.
        tiers = _index_tiers([ranker.get(b, []) for b in template.buckets] + [ranker.get("_", [])], ids)
        return tiers[:-1] if ranker.get("_") else tiers
    if len(ranker) != 1:
        raise ResultRejectedError("a plain ranker result has exactly one list")
    order = next(iter(ranker.values()))
    tiers = _index_tiers([[cid] for cid in order] if isinstance(order, list) else [order], ids)
    if len(tiers) != len(ids):
        raise ResultRejectedError(f"the order ranks {len(tiers)} of {len(ids)} candidates")
    return tiers


def ranking_from_result(result: object, task_data: dict, template: Template, annotator: str, source: str) -> Ranking:
    """One annotation's result list -> Ranking; raises ResultRejectedError with the reason."""
    ids, bodies = task_candidates(task_data)
    prompt = task_data.get("prompt")
    if not isinstance(prompt, str):
        raise ResultRejectedError("the task has no prompt")
    if not isinstance(result, list):
        raise ResultRejectedError("result must be a list")
    if template.pairwise:
        if len(ids) != 2:
            raise ResultRejectedError(f"a pairwise task has 2 candidates, this one {len(ids)}")
        tiers = _pairwise_tiers(result)
    else:
        tiers = _ranker_tiers(result, ids, template)
    return Ranking(prompt, tuple(bodies), tiers, annotator=annotator, source=source)
