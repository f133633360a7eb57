"""Gold scorers `(prompt, response) -> float`: the truth simulated annotators and evaluations measure against."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from services.errors import InvalidRequestError

GoldScorer = Callable[[str, str], float]
DEFAULT_GOLD = "services.gold:vader_positivity"


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_positivity(prompt: str, response: str) -> float:
    """VADER compound sentiment of the response in [-1, 1] (its lexicon ships inside the wheel)."""
    return _vader().polarity_scores(response)["compound"]


def load_gold_scorer(spec: str) -> GoldScorer:
    """`module:function` -> the function; a clear error when it does not resolve."""
    module_name, _, function_name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise InvalidRequestError(f"gold scorer {spec!r} is not an importable module:function ({error})") from None
