"""Held-out comparisons of one round, and a reward-model version's accuracy on them.

The gate scores the new and the active reward model on the same comparisons:
the round's own prompts, split by prompt, none of them trained on by either.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from labelstudio_backend.preference_store import StoredPreference, pairwise_agreement
from services.controller.gates import PromptTally
from services.core.rankings import PreferencePair, Ranking, group_pairs_by_prompt
from services.core.win_rate import win, win_rate
from services.reward.client import RewardClient

SCORE_CHUNK = 128  # items per Score call, well under the service's per-request limit


def heldout_split(
    round_prompts: Sequence[str],
    rankings: Sequence[Ranking],
    share: float,
    seed: int,
    drawn_at_random: Collection[str] = (),
) -> set[str]:
    """A seeded `share` of the round's prompts that have a strict preference: at least one, never all of them.

    Prompts in `drawn_at_random` (selection's random share) are held out first. The others were chosen
    because the active reward model was least sure of them: judged there, every model looks worse than
    on the answers it will score, and their labels are the ones that teach it most.
    """
    this_round = set(round_prompts)
    comparable = sorted(group_pairs_by_prompt(r for r in rankings if r.prompt in this_round))
    if len(comparable) < 2:
        return set()
    random.Random(seed).shuffle(comparable)
    comparable.sort(key=lambda prompt: prompt not in drawn_at_random)  # stable: each part stays shuffled
    n = min(max(1, round(share * len(comparable))), len(comparable) - 1)
    return set(comparable[:n])


def score_items(
    reward: RewardClient, items: Sequence[tuple[str, str]], version: str = ""
) -> tuple[list[float], list[float]]:
    """Scores and spreads (empty for a single model) of any number of items, in Score calls of SCORE_CHUNK."""
    scores: list[float] = []
    spreads: list[float] = []
    for start in range(0, len(items), SCORE_CHUNK):
        values, spread, _ = reward.score_with_spread(items[start : start + SCORE_CHUNK], version=version)
        scores += values
        spreads += spread
    return scores, spreads


def score_pairs(reward: RewardClient, version: str, pairs: Sequence[PreferencePair]) -> list[tuple[float, float]]:
    """(chosen, rejected) scores of every pair by `version`, each distinct answer scored once."""
    items = list(dict.fromkeys((p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)))
    scores = dict(zip(items, score_items(reward, items, version)[0], strict=True))
    return [(scores[(p.prompt, p.chosen)], scores[(p.prompt, p.rejected)]) for p in pairs]


def pair_accuracy(scored: Sequence[tuple[float, float]]) -> float:
    """Share of pairs scored in the annotators' (or the gold's) order, ties half; NaN without pairs."""
    if not scored:
        return float("nan")
    return win_rate([c for c, _ in scored], [r for _, r in scored])


def heldout_tallies(
    reward: RewardClient, new_version: str, active_version: str, heldout: Sequence[StoredPreference]
) -> list[PromptTally]:
    """Per held-out prompt: both versions' correct pairs and the annotators' agreement (the gate's evidence)."""
    groups = sorted(group_pairs_by_prompt(p.ranking for p in heldout).items())
    every = [pair for _, pairs in groups for pair in pairs]
    new, active = iter(score_pairs(reward, new_version, every)), iter(score_pairs(reward, active_version, every))
    tallies = []
    for prompt, pairs in groups:
        agreement = pairwise_agreement(p for p in heldout if p.ranking.prompt == prompt)
        compared = agreement["compared_pairs"]
        tallies.append(
            PromptTally(
                pairs=len(pairs),
                new_correct=sum(win(*next(new)) for _ in pairs),
                active_correct=sum(win(*next(active)) for _ in pairs),
                agreed=round(agreement["agreement"] * compared) if compared else 0,
                compared=compared,
            )
        )
    return tallies
