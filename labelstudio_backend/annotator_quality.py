"""Annotator quality from the preference store: agreement, speed, anchoring on the pre-ranking, position bias.

Label Studio Community shows who annotated what, not how well; Argilla and
Label Studio Enterprise report agreement per annotator. This module computes
such a report from `StoredPreference` rows alone (plus, optionally, the
reward model's scores of each task), with no service call, so the figures
can be tested by hand; `reward_scores` asks the reward service for them,
and `rlhf-loop prefs quality` prints the report.

Pairs are the store's (`pair_votes` in preference_store.py, which
`pairwise_agreement` and the exports count too): two candidates of one task,
keyed by their texts; an annotator orders them when they sit in different
tiers; ties, unsorted candidates and identical texts give no pair.

Every share comes with the count it rests on and a 95% Wilson interval: with
the few dozen pairs a new annotator has, 0.70 and 0.85 are often the same
figure, and the interval is what tells a lead so.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from labelstudio_backend.preference_store import PairKey, StoredPreference, signed_votes

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval

Votes = dict[PairKey, dict[str, int]]  # pair -> annotator -> +1 (its first text preferred) / -1


@dataclass(frozen=True)
class Share:
    """`hits` out of `n`, with a 95% Wilson interval; share and interval are None when n == 0."""

    hits: int
    n: int
    share: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, hits: int, n: int) -> Share:
        low, high = wilson_interval(hits, n) if n else (None, None)
        return cls(hits, n, hits / n if n else None, low, high)


@dataclass(frozen=True)
class LeadTime:
    """Label Studio's lead_time over the annotations that have one (rows from before it was kept have none)."""

    n: int
    median_s: float | None
    total_s: float | None


@dataclass(frozen=True)
class PredictionUse:
    """How many rankings opened with the reward model's pre-ranking, and how much the annotator moved it."""

    rankings: int
    from_prediction: int
    untouched: int  # submitted exactly as pre-ranked: the model's order, not the annotator's view
    distance_n: int  # rankings whose Kendall distance from the pre-ranking is known
    mean_distance: float | None


@dataclass(frozen=True)
class PositionBias:
    """How often the first-shown candidate lands in the best tier, against what a position-blind annotator gives.

    Chance is the mean of |best tier| / K over the same rankings: with a
    shown order unrelated to quality, the first-shown candidate is in the best
    tier that often. `first_in_best.share` well above `chance` (the interval
    clear of it) means the annotator favours whatever comes first.
    """

    first_in_best: Share
    chance: float | None


@dataclass(frozen=True)
class AnnotatorQuality:
    annotator: str
    annotations: int
    tasks: int
    ordered_pairs: int  # candidate pairs this annotator ordered (a tie is no pair)
    agreement: Share  # over (pair, other annotator) comparisons on pairs both ordered
    agreement_with: dict[str, Share]  # the same, split by the other annotator
    majority_agreement: Share  # over pairs the other annotators order by a strict majority
    reward_agreement: Share | None  # over this annotator's pairs the model does not tie; None without scores
    lead_time: LeadTime
    predictions: PredictionUse
    position_bias: PositionBias


@dataclass(frozen=True)
class QualityReport:
    annotations: int
    annotators: int
    tasks: int
    pairs: int  # distinct candidate pairs someone ordered
    agreement: Share  # inter-annotator: every two annotators on every pair both ordered (as `pairwise_agreement`)
    majority_agreement: Share  # every annotator against the leave-one-out majority, pooled
    reward_agreement: Share | None  # every annotator's ordered pairs against the model, pooled
    reward_version: str | None
    lead_time: LeadTime
    predictions: PredictionUse
    position_bias: PositionBias
    per_annotator: list[AnnotatorQuality]

    def to_dict(self) -> dict:
        """Plain dicts, lists and numbers, for `json.dumps`."""
        return asdict(self)


def wilson_interval(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial share: unlike p ± z·se it stays in [0, 1] and is sane at 0 and n."""
    if n <= 0:
        raise ValueError("a share of nothing has no interval")
    p = hits / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n the bound is exactly 0 or 1; rounding would leave 0.9999999999999999.
    low = 0.0 if hits == 0 else max(0.0, center - half)
    high = 1.0 if hits == n else min(1.0, center + half)
    return low, high


def tasks_to_score(prefs: Iterable[StoredPreference]) -> dict[int, tuple[str, tuple[str, ...]]]:
    """(prompt, candidates) of each distinct task with two or more candidates: what to ask the reward model.

    `annotator_quality`'s `scores[task_id]` are read against these candidates
    (the task's first row); a task's rows all carry the task's own data.
    """
    tasks: dict[int, tuple[str, tuple[str, ...]]] = {}
    for p in prefs:
        if p.task_id not in tasks and len(p.ranking.candidates) >= 2:
            tasks[p.task_id] = (p.ranking.prompt, p.ranking.candidates)
    return tasks


def annotator_quality(
    prefs: Iterable[StoredPreference],
    scores: Mapping[int, Sequence[float]] | None = None,
    reward_version: str | None = None,
) -> QualityReport:
    """The report; `scores[task_id]` are the reward model's scores of `tasks_to_score(prefs)[task_id]`'s candidates.

    Without `scores` the reward-agreement figures are None (not asked), which
    is not the same as a share over zero pairs (asked, nothing to compare).
    """
    prefs = list(prefs)
    votes = signed_votes(prefs)
    by_annotator: dict[str, list[StoredPreference]] = defaultdict(list)
    for p in prefs:
        by_annotator[p.annotator].append(p)
    text_scores = _text_scores(prefs, scores) if scores is not None else None

    per_annotator = []
    for name in sorted(by_annotator):
        rows = by_annotator[name]
        per_annotator.append(
            AnnotatorQuality(
                annotator=name,
                annotations=len(rows),
                tasks=len({p.task_id for p in rows}),
                ordered_pairs=sum(name in by for by in votes.values()),
                agreement=_agreement(votes, name),
                agreement_with=_agreement_with(votes, name),
                majority_agreement=_majority_agreement(votes, name),
                reward_agreement=_reward_agreement(votes, text_scores, name) if text_scores is not None else None,
                lead_time=_lead_time(rows),
                predictions=_prediction_use(rows),
                position_bias=_position_bias(rows),
            )
        )
    return QualityReport(
        annotations=len(prefs),
        annotators=len(by_annotator),
        tasks=len({p.task_id for p in prefs}),
        pairs=len(votes),
        agreement=_inter_annotator(votes),
        majority_agreement=_pooled(a.majority_agreement for a in per_annotator),
        reward_agreement=_pooled(a.reward_agreement for a in per_annotator) if text_scores is not None else None,
        reward_version=reward_version,
        lead_time=_lead_time(prefs),
        predictions=_prediction_use(prefs),
        position_bias=_position_bias(prefs),
        per_annotator=per_annotator,
    )


def _inter_annotator(votes: Votes) -> Share:
    agree = compared = 0
    for by_annotator in votes.values():
        for x, y in itertools.combinations(by_annotator.values(), 2):
            compared += 1
            agree += x == y
    return Share.of(agree, compared)


def _agreement(votes: Votes, name: str) -> Share:
    agree = compared = 0
    for by_annotator in votes.values():
        if name not in by_annotator:
            continue
        mine = by_annotator[name]
        for other, theirs in by_annotator.items():
            if other != name:
                compared += 1
                agree += mine == theirs
    return Share.of(agree, compared)


def _agreement_with(votes: Votes, name: str) -> dict[str, Share]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # other -> [agree, compared]
    for by_annotator in votes.values():
        if name not in by_annotator:
            continue
        for other, theirs in by_annotator.items():
            if other != name:
                counts[other][0] += by_annotator[name] == theirs
                counts[other][1] += 1
    return {other: Share.of(*counts[other]) for other in sorted(counts)}


def _majority_agreement(votes: Votes, name: str) -> Share:
    """Against the others' majority, leaving the annotator out: in a crowd of three, one's own vote would
    make them agree with a majority they formed, and a lone dissenter would look half right."""
    agree = compared = 0
    for by_annotator in votes.values():
        if name not in by_annotator:
            continue
        others = sum(v for other, v in by_annotator.items() if other != name)
        if others == 0:  # no one else ordered it, or the others split evenly: no majority to agree with
            continue
        compared += 1
        agree += by_annotator[name] == (1 if others > 0 else -1)
    return Share.of(agree, compared)


def _text_scores(prefs: list[StoredPreference], scores: Mapping[int, Sequence[float]]) -> dict[int, dict[str, float]]:
    """task -> candidate text -> score: pairs are keyed by text, and scores come aligned with `tasks_to_score`."""
    found = {}
    for task_id, (_, candidates) in tasks_to_score(prefs).items():
        if task_id in scores and len(scores[task_id]) == len(candidates):
            found[task_id] = dict(zip(candidates, scores[task_id], strict=True))
    return found


def _reward_agreement(votes: Votes, text_scores: dict[int, dict[str, float]], name: str) -> Share:
    """Share of the annotator's ordered pairs the model orders the same way; pairs the model ties are left out,
    as the annotators' ties are, and so are tasks it did not score."""
    agree = compared = 0
    for (task_id, a, b), by_annotator in votes.items():
        task_scores = text_scores.get(task_id)
        if name not in by_annotator or task_scores is None or a not in task_scores or b not in task_scores:
            continue
        difference = task_scores[a] - task_scores[b]
        if difference == 0:
            continue
        compared += 1
        agree += by_annotator[name] == (1 if difference > 0 else -1)
    return Share.of(agree, compared)


def _pooled(shares: Iterable[Share | None]) -> Share:
    present = [s for s in shares if s is not None]
    return Share.of(sum(s.hits for s in present), sum(s.n for s in present))


def _lead_time(rows: Sequence[StoredPreference]) -> LeadTime:
    # The median, not the mean: one task left open over lunch would make the mean meaningless.
    known = [p.lead_time_s for p in rows if p.lead_time_s is not None]
    if not known:
        return LeadTime(0, None, None)
    return LeadTime(len(known), statistics.median(known), sum(known))


def _prediction_use(rows: Sequence[StoredPreference]) -> PredictionUse:
    distances = [p.prediction_distance for p in rows if p.from_prediction and p.prediction_distance is not None]
    return PredictionUse(
        rankings=len(rows),
        from_prediction=sum(p.from_prediction for p in rows),
        untouched=sum(p.untouched_prediction for p in rows),
        distance_n=len(distances),
        mean_distance=statistics.fmean(distances) if distances else None,
    )


def _position_bias(rows: Sequence[StoredPreference]) -> PositionBias:
    """Over rankings with a known shown order, two or more candidates and a best tier.

    Rankings that opened with the pre-ranking are left out: there the first
    shown is the model's favourite, so keeping it on top is agreement with the
    model (or anchoring, which `untouched` counts), not a taste for position.
    """
    hits = n = 0
    chance = 0.0
    for p in rows:
        k = len(p.ranking.candidates)
        if p.from_prediction or not p.shown_order or not p.ranking.tiers or k < 2:
            continue
        best = p.ranking.tiers[0]
        n += 1
        hits += p.shown_order[0] in best
        chance += len(best) / k
    return PositionBias(Share.of(hits, n), chance / n if n else None)


def reward_scores(prefs: Iterable[StoredPreference], client, version: str = "") -> tuple[dict[int, list[float]], str]:
    """(scores per task, the version that gave them): one Rank per distinct task through a RewardClient.

    Every call after the first pins the version the first got, so a promotion
    mid-run cannot mix two models in one figure.
    """
    scores: dict[int, list[float]] = {}
    for task_id, (prompt, candidates) in tasks_to_score(prefs).items():
        result = client.rank(prompt, candidates, version=version)
        scores[task_id], version = result.scores, result.version
    return scores, version
