"""`rlhf-loop image build`: the project's images built here, with no registry and no Docker engine."""

from __future__ import annotations

import argparse
import json
import sys


def register(commands: argparse._SubParsersAction) -> None:
    """Add `image build`."""
    image = commands.add_parser("image", help="the container image").add_subparsers(dest="image", required=True)
    build = image.add_parser(
        "build",
        help="build the Dockerfile's CPU variant, and Label Studio's image for the compose override, "
        "with buildah on a debootstrap base (root; `make image`)",
    )
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from services.tools.container_image import build_image, build_labelstudio_image

    def progress(line: str) -> None:
        print(line, file=sys.stderr)

    print(json.dumps([build_image(progress=progress), build_labelstudio_image(progress=progress)]))
    return 0
