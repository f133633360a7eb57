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
    return sentiment["pos"] - sentiment["neg"] + _coverage(prompt, response) / 4


def _coverage(prompt: str, response: str) -> float:
    """Share of the prompt's topic words the response uses."""
    asked = topic_words(prompt)
    return len(asked & topic_words(response)) / len(asked) if asked else 0.0


CONCISE_WORDS = 20


def concise_and_complete(prompt: str, response: str) -> float:
    """About 20 words that finish their sentence, on topic. Not sentiment: length, form and topic only.

    -|words - 20| / 20, plus 0.5 when the answer ends a sentence (". ! ?"),
    plus a quarter of the prompt's topic words used. SmolLM2 at 48 new tokens
    often runs long and stops mid-sentence, so there is room to learn.
    """
    words = re.findall(r"[A-Za-z0-9']+", response)
    length = -abs(len(words) - CONCISE_WORDS) / CONCISE_WORDS
    complete = 0.5 if response.rstrip().endswith((".", "!", "?")) else 0.0
    return length + complete + _coverage(prompt, response) / 4


# Function words that carry no detail (beyond the request words above).
_FILLER_WORDS = """that this there then than they them their have has had was were will just also very really more
most much many any all not but from into out over here its"""
_FILLER = frozenset(_FILLER_WORDS.split())


def on_topic_detail(prompt: str, response: str) -> float:
    """Stays on the prompt's topic and says something specific. Not sentiment: coverage and distinct detail.

    The prompt's topic words used (share), plus distinct content words up to
    15 (as a share of 15), minus the share of content words that repeat: a
    policy cannot pad its way up, and warmth alone earns nothing.
    """
    content = [w[:5] for w in re.findall(r"[a-z]{3,}", response.lower()) if w not in REQUEST_WORDS | _FILLER]
    distinct = len(set(content))
    repeated = 1 - distinct / len(content) if content else 0.0
    return _coverage(prompt, response) + min(distinct, 15) / 15 - repeated
