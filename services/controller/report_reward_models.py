"""Reward models in the report: every round's on one fixed gold-labelled set, and the serving one on every policy.

Each round holds out its own prompts, and its pairs get harder as the
policies improve, so the gates' accuracies are not comparable across rounds.
The report builds one set instead: pairs of answers to the held-out prompts,
drawn from every policy version it sampled, ordered by the gold scorer. Every
round's reward model is scored on exactly these pairs, so its progress shows
without drifting with the rounds' data.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

from services.controller.report import VersionSamples
from services.controller.report_statistics import bootstrap_interval
from services.controller.reward_evaluation import pair_accuracy, score_items, score_pairs
from services.core.rankings import PreferencePair
from services.reward.client import RewardClient

# Pairs closer in gold score than this share of the answers' gold spread are left out: no judge, human
# or model, can order them, and they would only add noise to every model's accuracy alike.
MIN_GAP_SHARE = 0.1


def gold_comparisons(samples: dict[str, VersionSamples], prompts: Sequence[str]) -> list[list[PreferencePair]]:
    """Per held-out prompt, every pair of distinct answers (any versions) the gold scorer orders clearly."""
    every = [g for drawn in samples.values() for row in drawn.gold for g in row]
    min_gap = MIN_GAP_SHARE * statistics.pstdev(every) if len(every) > 1 else 0.0
    per_prompt = []
    for index, prompt in enumerate(prompts):
        answers = {}
        for drawn in samples.values():
            answers.update(zip(drawn.texts[index], drawn.gold[index], strict=True))
        pairs = []
        for (a, gold_a), (b, gold_b) in itertools.combinations(answers.items(), 2):
            if abs(gold_a - gold_b) > min_gap:
                chosen, rejected = (a, b) if gold_a > gold_b else (b, a)
                pairs.append(PreferencePair(prompt, chosen, rejected, rank_gap=1))
        per_prompt.append(pairs)
    return per_prompt


def reward_models_on(
    reward: RewardClient, versions: Sequence[str], per_prompt: Sequence[Sequence[PreferencePair]], seed: int = 0
) -> dict[str, dict]:
    """Each version's accuracy against the gold on the fixed set: the mean over prompts, with a bootstrap CI."""
    groups = [pairs for pairs in per_prompt if pairs]
    every = [p for pairs in groups for p in pairs]
    result = {}
    for version in dict.fromkeys(versions):
        scored = iter(score_pairs(reward, version, every))
        per_group = [pair_accuracy([next(scored) for _ in pairs]) for pairs in groups]
        low, high = bootstrap_interval(per_group, seed=seed) if per_group else (math.nan, math.nan)
        accuracy = statistics.fmean(per_group) if per_group else math.nan
        result[version] = {"accuracy": accuracy, "ci": [low, high], "pairs": len(every), "prompts": len(groups)}
    return result


def policies_by_serving_model(
    reward: RewardClient, samples: dict[str, VersionSamples], prompts: Sequence[str], conservative_lambda: float
) -> list[dict]:
    """Each sampled policy version's mean proxy, conservative and gold score, by the serving reward model.

    One judge for every version, so the columns compare down the table: reward
    hacking shows as proxy rising while gold does not; the conservative score
    (mean - lambda x spread, an ensemble only) is what uncertainty-weighted
    training optimises.
    """
    rows = []
    for version, drawn in samples.items():
        items = [(prompt, text) for prompt, row in zip(prompts, drawn.texts, strict=True) for text in row]
        scores, spreads = score_items(reward, items)
        conservative = (
            statistics.fmean(s - conservative_lambda * d for s, d in zip(scores, spreads, strict=True))
            if spreads
            else None
        )
        rows.append({"version": version, "proxy": statistics.fmean(scores), "conservative": conservative,
                     "spread": statistics.fmean(spreads) if spreads else None, "gold": drawn.gold_mean})  # fmt: skip
    return rows
