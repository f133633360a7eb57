"""Candidates for annotation, written by more than one policy version, with each candidate's origin."""

from __future__ import annotations

import random
from collections.abc import Sequence

from services.policy.client import PolicyClient


def mixed_candidates(
    policy: PolicyClient,
    prompts: Sequence[str],
    k: int,
    versions: Sequence[str],
    rng: random.Random,
    **sampling,
) -> tuple[list[list[str]], list[list[str]]]:
    """(k candidates per prompt, the version that wrote each one), the versions taking turns.

    With two versions and k = 4 each writes two. The candidates of a prompt are
    shuffled, so an origin never shows as a position in the task.
    """
    shares = [k // len(versions) + (i < k % len(versions)) for i in range(len(versions))]
    written = {}
    for version, n in zip(versions, shares, strict=True):
        if n:
            written[version], _ = policy.generate_texts(prompts, n, version=version, **sampling)
    candidates, origins = [], []
    for index in range(len(prompts)):
        row = [(text, version) for version, texts in written.items() for text in texts[index]]
        rng.shuffle(row)
        candidates.append([text for text, _ in row])
        origins.append([version for _, version in row])
    return candidates, origins


def provenance(origins: Sequence[str]) -> dict:
    """Task data on who wrote the candidates: every version, joined, and each candidate's."""
    return {"policy_version": "+".join(dict.fromkeys(origins)), "candidate_policies": list(origins)}
