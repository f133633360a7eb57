"""`rlhf-loop health TARGET`: the container health check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `health`."""
    health = commands.add_parser("health", help="exit 0 when a service is healthy (for container health checks)")
    health.add_argument("target", help="HOST:PORT of a gRPC service (grpc.health.v1), or an http(s) URL")
    health.add_argument("--timeout-s", type=float, default=5.0)
    health.add_argument("--tls-ca", type=Path, help="CA certificate of a TLS service")
    health.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    """gRPC health SERVING for HOST:PORT, HTTP 200 for a URL; exit 1 otherwise."""
    import urllib.request

    from services.rpc.client import GrpcClient

    try:
        if args.target.startswith(("http://", "https://")):
            urllib.request.urlopen(args.target, timeout=args.timeout_s).read()
        else:
            with GrpcClient(args.target, tls_ca=args.tls_ca) as client:
                client.wait_ready(timeout_s=args.timeout_s)
    except (OSError, TimeoutError) as error:
        print(f"{args.target}: not healthy ({error})", file=sys.stderr)
        return 1
    return 0
