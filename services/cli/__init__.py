"""`rlhf-loop`: one console script over the project's Python API."""

from __future__ import annotations

import argparse
import os
import sys

from services.cli import (
    annotate,
    bench,
    demo,
    health,
    image,
    labelstudio,
    loop,
    models,
    prefs,
    project,
    serve,
    tools,
    train,
)

# In the order `rlhf-loop --help` lists their commands.
GROUPS = (serve, train, labelstudio, project, prefs, annotate, loop, bench, tools, health, demo, models, image)


def build_parser() -> argparse.ArgumentParser:
    """The `rlhf-loop` parser: each command group adds its own sub-commands and handlers."""
    parser = argparse.ArgumentParser(prog="rlhf-loop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command argv names; the exit code is its handler's, or 2 for an error the user can fix."""
    # Models are only ever loaded from local directories: never let a typo reach a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from services.core.errors import ServiceError
    from services.core.stop_signals import unblock_stop_signals

    unblock_stop_signals()  # every role stops gracefully on SIGTERM, whatever mask its parent left

    try:
        return args.func(args)
    except ServiceError as error:  # a clear message, not a traceback, for what the user can fix
        print(f"rlhf-loop: {error}", file=sys.stderr)
        return 2
