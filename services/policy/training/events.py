"""The JSON lines the training worker reports on stdout, and their reading on the service's side."""

from __future__ import annotations

import json


def emit(event: dict) -> None:
    """One JSON line on stdout: how the training worker reports to the policy service."""
    print(json.dumps(event), flush=True)


def parse(line: bytes) -> dict | None:
    """The event on a stdout line, or None when a library printed it (only the worker's events are JSON objects)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
