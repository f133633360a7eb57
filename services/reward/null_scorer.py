"""A benchmark stand-in for the reward model: a forward pass that costs nothing.

`rlhf-loop bench reward --null-model` serves it to measure the serving path
alone (gRPC, validation, the batcher, the executor hop, the replies). It is not
a model: its "reward" of an item is the response's length in characters, cheap
and different per item so each caller can be checked to get its own.

It cannot serve real traffic by accident: `serve reward --null-model` is a
hidden flag, and the stand-in serves only a registry it created itself (its
base carries STAND_IN_FILE and no weights), so a real registry is refused and
a real service refuses its registry (no safetensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from services.core.errors import PreconditionError
from services.reward.scorer import RewardScorer, ScoreItem
from services.reward.service import RewardService

NULL_MODEL = "null-benchmark-stand-in"
STAND_IN_FILE = "NULL_MODEL_BENCHMARK_STAND_IN"


class NotAStandInRegistryError(PreconditionError):
    """--null-model was pointed at a registry holding real models."""


class NullScorer(RewardScorer):
    """RewardScorer's interface without a model or tokenizer."""

    def __init__(self, version: str, max_length: int):
        model = SimpleNamespace(config=SimpleNamespace(model_type=NULL_MODEL, num_labels=1), device="cpu")
        super().__init__(model, None, version, max_length)

    def encode(self, item: ScoreItem) -> list[int]:
        # One "token" per word, for the HTTP APIs that report token usage.
        return [0] * min(self.max_length, len(item.prompt.split()) + len(item.response.split()))

    def score_members(self, items: Sequence[ScoreItem]) -> list[tuple[float, ...]]:
        return [(float(len(item.response)),) for item in items]


class NullRewardService(RewardService):
    """The reward service with every version served by NullScorer: same batcher, RPCs, versions, metrics."""

    def _save_backbone(self, staging: Path) -> None:
        (staging / STAND_IN_FILE).write_text("a benchmark stand-in: no weights, scores are response lengths\n")

    def _load_scorer(self, version: str) -> NullScorer:
        info = self.registry.get(version)
        if not (info.path / STAND_IN_FILE).is_file():
            raise NotAStandInRegistryError(
                f"{version} in {self.config.registry_dir} is a real model; the null model (a benchmark "
                "stand-in) serves only a registry it created itself"
            )
        return NullScorer(version, self.config.max_length)
