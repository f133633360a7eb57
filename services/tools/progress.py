"""Progress lines of the tools: `[tag] message` on stderr, so stdout carries only a tool's JSON result."""

from __future__ import annotations

import sys
from collections.abc import Callable


def stderr_progress(tag: str) -> Callable[[str], None]:
    """A progress callback printing `[tag] message` to stderr, flushed at once (the tools run for minutes)."""

    def say(message: str) -> None:
        print(f"[{tag}] {message}", file=sys.stderr, flush=True)

    return say
