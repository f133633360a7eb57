"""`rlhf-loop models build-tiny|prepare`: the embedded models and a tiny one for tests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `models build-tiny` and `models prepare`."""
    models = commands.add_parser("models", help="embedded and test models").add_subparsers(
        dest="models_command", required=True
    )
    tiny = models.add_parser("build-tiny", help="write a tiny random Llama + tokenizer (for tests)")
    tiny.add_argument("dir", type=Path)
    tiny.set_defaults(func=_build_tiny)
    prepare = models.add_parser("prepare", help="locate the embedded models, converting SmolLM2 once into the cache")
    prepare.set_defaults(func=_prepare)


def _build_tiny(args: argparse.Namespace) -> int:
    from services.sim.tiny_model import build_tiny_llama

    print(build_tiny_llama(args.dir))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from services.models.loading import minilm_path, smollm2_path

    print(json.dumps({"minilm": str(minilm_path()), "smollm2": str(smollm2_path())}, indent=2))
    return 0
