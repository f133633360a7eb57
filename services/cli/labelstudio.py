"""`rlhf-loop labelstudio up|down`: a local Label Studio server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `labelstudio up` and `labelstudio down`."""
    labelstudio = commands.add_parser("labelstudio", help="a local Label Studio server").add_subparsers(
        dest="labelstudio_command", required=True
    )
    up = labelstudio.add_parser("up", help="install (once) and start Label Studio on 127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path)
    up.set_defaults(func=_up)
    down = labelstudio.add_parser("down", help="stop the Label Studio that `up` started")
    down.add_argument("--data-dir", type=Path)
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import up

    credentials = up(port=args.port, data_dir=args.data_dir, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"url": credentials.url, "username": credentials.username, "password": credentials.password,
                      "token": credentials.token}, indent=2))  # fmt: skip
    return 0


def _down(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import down

    print("stopped" if down(args.data_dir) else "no Label Studio was running from that data dir")
    return 0
