"""`rlhf-loop image build`: the project's Dockerfile built here, with no registry and no Docker engine."""

from __future__ import annotations

import argparse
import json
import sys


def register(commands: argparse._SubParsersAction) -> None:
    """Add `image build`."""
    image = commands.add_parser("image", help="the container image").add_subparsers(dest="image", required=True)
    build = image.add_parser(
        "build", help="build the Dockerfile's CPU variant with buildah on a debootstrap base (root; `make image`)"
    )
    build.add_argument("--tag", default=None, help="the image name (default localhost/rlhf-loop:cpu)")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from services.tools.container_image import IMAGE, build_image

    figures = build_image(args.tag or IMAGE, progress=lambda line: print(line, file=sys.stderr))
    print(json.dumps(figures))
    return 0
