"""Protobuf <-> domain conversions that more than one service uses."""

from __future__ import annotations

from typing import TypeVar

from services.core.rankings import Ranking
from services.proto.rlhf.v1 import common_pb2

Config = TypeVar("Config")


def ranking_from_proto(message: common_pb2.Ranking) -> Ranking:
    return Ranking(
        prompt=message.prompt,
        candidates=tuple(message.candidates),
        tiers=tuple(tuple(tier.candidates) for tier in message.tiers),
        annotator=message.annotator,
        source=message.source,
    )


def ranking_to_proto(ranking: Ranking) -> common_pb2.Ranking:
    return common_pb2.Ranking(
        prompt=ranking.prompt,
        candidates=list(ranking.candidates),
        tiers=[common_pb2.Tier(candidates=list(tier)) for tier in ranking.tiers],
        annotator=ranking.annotator,
        source=ranking.source,
    )


def config_from_proto(message, config: Config) -> Config:
    """`config` (a dataclass of defaults) with every field the caller set in `message` (proto3 optional)."""
    for field in message.DESCRIPTOR.fields:
        if message.HasField(field.name):
            setattr(config, field.name, getattr(message, field.name))
    return config
