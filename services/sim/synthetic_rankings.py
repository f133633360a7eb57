"""A small built-in preference set with a clear rule, for the demo and tests.

Each candidate mixes friendly and hostile phrases with neutral filler; the
annotator's order follows (friendly - hostile) count, equal counts tie. A
reward model that learns the rule ranks held-out prompts well above chance.
"""

from __future__ import annotations

import random

from services.core.rankings import Ranking
from services.sim.prompts import TOPICS

FRIENDLY = [
    "Happy to help!",
    "Great question.",
    "Here is a clear step-by-step answer.",
    "I hope this helps.",
    "Thanks for asking.",
    "Good luck, you can do it!",
]
HOSTILE = [
    "That is a stupid question.",
    "Figure it out yourself.",
    "I do not care.",
    "Go away.",
    "This is boring.",
    "Stop wasting my time.",
]
FILLER = [
    "It depends on the details.",
    "There are several options.",
    "Start with the basics.",
    "Practice helps.",
    "Consider the trade-offs.",
    "Take it one step at a time.",
]


def synthetic_rankings(n_prompts: int = 40, k: int = 4, seed: int = 0) -> list[Ranking]:
    """`n_prompts` rankings of `k` candidates each, ordered by the friendliness rule."""
    rng = random.Random(seed)
    rankings = []
    for index in range(n_prompts):
        prompt = f"Can you tell me about {TOPICS[index % len(TOPICS)]}? (question {index})"
        candidates, quality = [], []
        for _ in range(k):
            friendly, hostile = rng.randint(0, 2), rng.randint(0, 2)
            sentences = rng.sample(FRIENDLY, friendly) + rng.sample(HOSTILE, hostile) + rng.sample(FILLER, 2)
            rng.shuffle(sentences)
            candidates.append(" ".join(sentences))
            quality.append(friendly - hostile)
        tiers: list[list[int]] = []
        for i in sorted(range(k), key=lambda i: -quality[i]):
            if tiers and quality[tiers[-1][0]] == quality[i]:
                tiers[-1].append(i)
            else:
                tiers.append([i])
        rankings.append(
            Ranking(prompt, tuple(candidates), tuple(tuple(t) for t in tiers), annotator="rule", source="builtin")
        )
    return rankings
