"""Forward passes of one reward-model version over (prompt, response) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from services.models.loading import load_reward_model
from services.reward.encoding import encode_pair


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    response: str


class RewardScorer:
    """A loaded reward model; `score_members` is what the dynamic batcher calls.

    An ensemble is one model with a head of several outputs on a shared
    backbone (num_labels = members): one forward pass scores every member.
    """

    def __init__(self, model, tokenizer, version: str, max_length: int, bucket_tokens: int = 512):
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        self.max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
        self.bucket_tokens = bucket_tokens

    @classmethod
    def load(cls, path: Path, version: str, max_length: int, **load_options) -> RewardScorer:
        model, tokenizer = load_reward_model(path, **load_options)
        return cls(model, tokenizer, version, max_length)

    def encode(self, item: ScoreItem) -> list[int]:
        return encode_pair(self.tokenizer, item.prompt, item.response, self.max_length)

    @property
    def members(self) -> int:
        return int(self.model.config.num_labels)

    def score(self, items: Sequence[ScoreItem]) -> list[float]:
        """The reward of each item: the members' mean."""
        return [member_mean(scores) for scores in self.score_members(items)]

    @torch.inference_mode()
    def score_members(self, items: Sequence[ScoreItem]) -> list[tuple[float, ...]]:
        """Every member's score of each item (one value for a single model)."""
        encoded = [self.encode(i) for i in items]
        scores: list[tuple[float, ...]] = [()] * len(items)
        for chunk in length_buckets([len(ids) for ids in encoded], self.bucket_tokens):
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            batch = batch.to(self.model.device)
            logits = self.model(**batch).logits.float().tolist()
            for index, row in zip(chunk, logits, strict=True):
                scores[index] = tuple(row)
        return scores


def member_mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores)


def member_spread(scores: Sequence[float]) -> float:
    """Sample standard deviation of the members' scores (0 for one member)."""
    if len(scores) < 2:
        return 0.0
    mean = member_mean(scores)
    return (sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) ** 0.5


def length_buckets(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped by similar length so each padded chunk holds at most `max_tokens` tokens.

    Sorting before padding cuts the wasted compute of mixed lengths; a chunk
    always holds at least one item, however long.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so this item's length is the chunk's padded width.
        if current and (len(current) + 1) * lengths[index] > max_tokens:
            chunks.append(current)
            current = []
        current.append(index)
    if current:
        chunks.append(current)
    return chunks
