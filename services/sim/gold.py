"""Gold scorers `(prompt, response) -> float`: the truth simulated annotators and evaluations measure against."""

from __future__ import annotations

import functools
import re


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_positivity(prompt: str, response: str) -> float:
    """VADER compound sentiment of the response in [-1, 1] (its lexicon ships inside the wheel)."""
    return _vader().polarity_scores(response)["compound"]


# Words that ask for something rather than name what it is about.
_REQUEST_WORDS = """a an the and or of to in on for with about me my you your i it is are be can could would please
what how why tell give write describe explain show make some something one two three short long brief friendly note
tip interesting sentence sentences paragraph"""
REQUEST_WORDS = frozenset(_REQUEST_WORDS.split())


def topic_words(text: str) -> set[str]:
    """Content words as 5-letter stems ("tomatoes" and "tomato" match), request words left out."""
    return {w[:5] for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in REQUEST_WORDS}


def friendly_and_on_topic(prompt: str, response: str) -> float:
    """Share of positive minus negative words (VADER) plus a quarter of the prompt's topic words the response uses.

    The demo's gold. VADER's compound score saturates after one round of RL
    (measured on SmolLM2 with the built-in prompts: 70% of its samples score
    above 0.5 before GRPO, 85-88% after one round); the share of positive words keeps rising with warmer
    text, and the topic term keeps a policy from drifting into generic cheer.
    Range about [-1, 1.25]; SmolLM2's answers average 0.32 (0.19 + 0.53 / 4).
    """
    sentiment = _vader().polarity_scores(response)
    asked = topic_words(prompt)
    coverage = len(asked & topic_words(response)) / len(asked) if asked else 0.0
    return sentiment["pos"] - sentiment["neg"] + coverage / 4
