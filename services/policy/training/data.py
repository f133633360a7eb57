"""What a policy run trains on, and the hash of it that, with the config and init version, names the run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from services.core.errors import PreconditionError
from services.core.rankings import PreferencePair, Ranking, dataset_hash, group_pairs_by_prompt


@dataclass(frozen=True)
class TrainingData:
    """Prompts (grpo, rloo) or preference pairs (dpo), with their digest."""

    digest: str
    prompts: tuple[str, ...] = ()
    pairs: tuple[PreferencePair, ...] = ()

    @classmethod
    def from_prompts(cls, prompts: Sequence[str]) -> TrainingData:
        """Prompts to sample from; their order does not change the digest."""
        return cls(hashlib.sha256(json.dumps(sorted(prompts)).encode()).hexdigest()[:16], prompts=tuple(prompts))

    @classmethod
    def from_rankings(cls, rankings: Sequence[Ranking]) -> TrainingData:
        """The preference pairs the rankings imply; raises PreconditionError when they imply none."""
        for ranking in rankings:
            ranking.validate()
        pairs = tuple(p for group in group_pairs_by_prompt(rankings).values() for p in group)
        if not pairs:
            raise PreconditionError(f"dpo needs preference pairs; {len(rankings)} rankings gave none")
        return cls(dataset_hash(rankings), pairs=pairs)
