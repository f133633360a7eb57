"""Prompt files: JSON lines, each an object with a "prompt" string (what `tasks import` and the loop read)."""

from __future__ import annotations

import json
from pathlib import Path

from services.core.errors import InvalidRequestError


def read_prompts(path: Path | str) -> list[str]:
    """The prompts of a JSONL file, in file order; a clear error names the line that is not one."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InvalidRequestError(f"cannot read the prompts file {path}: {error.strerror}") from None
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError(f'{path}:{number}: expected a JSON object with a "prompt" string') from None
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError(f'{path}:{number}: "prompt" must be a non-empty string')
        prompts.append(prompt)
    if not prompts:
        raise InvalidRequestError(f"{path} holds no prompts")
    return prompts
