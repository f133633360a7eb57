"""Rankings with ties -> pairwise comparisons, grouped and split by prompt.

InstructGPT trains on all C(K,2) comparisons of a ranking and keeps the pairs
of one prompt together: shuffled apart, each ranking is seen K-1 times per
epoch and the model overfits. Held-out data is split by prompt for the same
reason -- a pair split would leak the prompt into training.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.core.errors import InvalidRequestError

# A judge of one response: (prompt, response) -> score. Gold scorers of simulations have this shape.
GoldScorer = Callable[[str, str], float]


@dataclass(frozen=True)
class Ranking:
    """One annotator's order of K candidates; `tiers` are candidate indices best-first, ties share a tier."""

    prompt: str
    candidates: tuple[str, ...]
    tiers: tuple[tuple[int, ...], ...]
    annotator: str = ""
    source: str = ""

    def validate(self) -> None:
        """Raise InvalidRequestError when tiers name a candidate twice or one that does not exist."""
        seen: set[int] = set()
        for tier in self.tiers:
            for index in tier:
                if not 0 <= index < len(self.candidates):
                    raise InvalidRequestError(f"tier index {index} out of range for {len(self.candidates)} candidates")
                if index in seen:
                    raise InvalidRequestError(f"candidate {index} appears in more than one tier")
                seen.add(index)


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    rank_gap: int


@dataclass
class PromptSplit:
    train: list[PreferencePair] = field(default_factory=list)
    heldout: list[PreferencePair] = field(default_factory=list)
    train_prompts: int = 0
    heldout_prompts: int = 0
    train_rankings: list[Ranking] = field(default_factory=list)  # whole rankings of the train prompts (listwise)


def rankings_to_pairs(ranking: Ranking) -> list[PreferencePair]:
    """All pairs (better tier, worse tier); candidates in one tier tie and give no pair."""
    ranking.validate()
    pairs = []
    for better_rank, better in enumerate(ranking.tiers):
        for worse_rank in range(better_rank + 1, len(ranking.tiers)):
            for i in better:
                for j in ranking.tiers[worse_rank]:
                    pairs.append(
                        PreferencePair(
                            prompt=ranking.prompt,
                            chosen=ranking.candidates[i],
                            rejected=ranking.candidates[j],
                            rank_gap=worse_rank - better_rank,
                        )
                    )
    return pairs


def group_pairs_by_prompt(rankings: Iterable[Ranking]) -> dict[str, list[PreferencePair]]:
    """Pairs of every ranking keyed by prompt, first-seen order (several annotators may rank one prompt)."""
    groups: dict[str, list[PreferencePair]] = {}
    for ranking in rankings:
        pairs = rankings_to_pairs(ranking)
        if pairs:
            groups.setdefault(ranking.prompt, []).extend(pairs)
    return groups


def split_by_prompt(groups: dict[str, list[PreferencePair]], heldout_fraction: float, seed: int) -> PromptSplit:
    """Hold out whole prompts: at least one each side when there are two or more prompts."""
    prompts = sorted(groups)
    random.Random(seed).shuffle(prompts)
    n_heldout = round(len(prompts) * heldout_fraction)
    if len(prompts) >= 2 and heldout_fraction > 0:
        n_heldout = min(max(n_heldout, 1), len(prompts) - 1)
    split = PromptSplit(train_prompts=len(prompts) - n_heldout, heldout_prompts=n_heldout)
    for position, prompt in enumerate(prompts):
        target = split.heldout if position < n_heldout else split.train
        target.extend(groups[prompt])
    return split


def dataset_hash(rankings: Sequence[Ranking]) -> str:
    """Order-independent content hash of a preference dataset, recorded with each trained version."""
    digests = sorted(
        hashlib.sha256(json.dumps([r.prompt, list(r.candidates), [list(t) for t in r.tiers]]).encode()).hexdigest()
        for r in rankings
    )
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]


def training_data_hash(rankings: Sequence[Ranking], heldout: Sequence[Ranking] = ()) -> str:
    """What a trained version records as its data: the rankings, and the held-out ones when the caller chose them."""
    if not heldout:
        return dataset_hash(rankings)
    return hashlib.sha256(f"{dataset_hash(rankings)}|{dataset_hash(heldout)}".encode()).hexdigest()[:16]


def kendall_distance(tiers: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Share of candidate pairs that `tiers` orders otherwise than `reference` (both best-first tiers).

    0 when the ranking keeps the reference's order, 1 when it reverses it. A
    pair tied in one and ordered in the other counts half (Kendall distance
    with penalty 1/2, Fagin et al. 2004); candidates either leaves out (an
    unsorted bucket) are not counted.
    """
    level = {index: rank for rank, tier in enumerate(tiers) for index in tier}
    reference_level = {index: rank for rank, tier in enumerate(reference) for index in tier}
    common = sorted(level.keys() & reference_level.keys())
    pairs, discordant = 0, 0.0
    for a_at, a in enumerate(common):
        for b in common[a_at + 1 :]:
            pairs += 1
            ours = (level[a] > level[b]) - (level[a] < level[b])
            theirs = (reference_level[a] > reference_level[b]) - (reference_level[a] < reference_level[b])
            if ours != theirs:
                discordant += 1 if ours and theirs else 0.5
    return discordant / pairs if pairs else 0.0
