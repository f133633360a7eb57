"""The check every training config runs before any work starts."""

from __future__ import annotations

import math
from dataclasses import fields

from services.core.errors import InvalidRequestError


def check_config(config, ranges: dict[str, bool]) -> None:
    """Every float field finite, then every named range holds; the error names the first field that fails."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequestError(f"{f.name} must be a finite number, got {value}")
    for name, ok in ranges.items():
        if not ok:
            raise InvalidRequestError(f"{name} out of range: {getattr(config, name)!r}")
