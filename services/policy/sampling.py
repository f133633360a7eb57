"""How completions are sampled; torch-free, so the Label Studio backend and the CLI can share it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.core.errors import InvalidRequestError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int | None = None

    def validate(self, max_new_tokens_limit: int) -> None:
        if not math.isfinite(self.temperature) or not 0 <= self.temperature <= 10:
            raise InvalidRequestError(f"temperature must be in [0, 10], got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_new_tokens <= max_new_tokens_limit:
            raise InvalidRequestError(
                f"max_new_tokens must be in [1, {max_new_tokens_limit}], got {self.max_new_tokens}"
            )
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise InvalidRequestError(f"seed out of range: {self.seed}")
