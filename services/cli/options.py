"""Options several command groups share: which Label Studio to talk to, the backend's basic auth."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.core.env import BACKEND_PASSWORD_ENV, LABELSTUDIO_TOKEN_ENV


def add_labelstudio_options(parser: argparse.ArgumentParser) -> None:
    """--labelstudio-url and --data-dir, read back by `labelstudio_login`."""
    parser.add_argument(
        "--labelstudio-url",
        help=f"Label Studio URL (token in ${LABELSTUDIO_TOKEN_ENV}); default: the one `up` started",
    )
    parser.add_argument("--data-dir", type=Path, help="the data dir `labelstudio up` used (default: in the cache)")


def labelstudio_login(args: argparse.Namespace) -> tuple[str, str]:
    """(url, API token) of the Label Studio the options name."""
    from labelstudio_backend.labelstudio_server import labelstudio_credentials

    return labelstudio_credentials(args.labelstudio_url, args.data_dir)


def basic_auth(args: argparse.Namespace) -> tuple[str, str] | None:
    """(user, password) for --basic-auth-user, the password from the environment; None without the flag."""
    if not args.basic_auth_user:
        return None
    password = os.environ.get(BACKEND_PASSWORD_ENV)
    if not password:
        sys.exit(f"--basic-auth-user needs the password in ${BACKEND_PASSWORD_ENV}")
    return args.basic_auth_user, password
