"""`rlhf-loop chaos` and `rlhf-loop reliability`: the reliability checks, run against a real stack."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `chaos` and `reliability`."""
    chaos = commands.add_parser("chaos", help="kill -9 parts of a running loop at random moments; check the result")
    chaos.add_argument("--seed", type=int, default=0)
    chaos.add_argument("--kills", type=int, default=5)
    chaos.add_argument("--iterations", type=int, default=2)
    chaos.add_argument(
        "--database", choices=("postgresql", "sqlite"), default="postgresql",
        help="where the store and the loop state live; a PostgreSQL server is a victim too",
    )  # fmt: skip
    chaos.set_defaults(func=_chaos)
    reliability = commands.add_parser(
        "reliability", help="write RELIABILITY.md from the results `make reliability` gathered (load, fuzzing, chaos)"
    )
    reliability.add_argument(
        "--results", type=Path, default=Path("build/reliability"), help="folder of load.json, chaos.json, *.xml"
    )
    reliability.add_argument("--out", type=Path, default=Path("docs"), help="folder for RELIABILITY.md + its JSON")
    reliability.add_argument("--render-only", action="store_true", help="re-render the page from OUT/reliability.json")
    reliability.set_defaults(func=_reliability)


def _chaos(args: argparse.Namespace) -> int:
    from services.tools.chaos import run_chaos

    report = run_chaos(args.seed, args.kills, iterations=args.iterations, database=args.database)
    print(json.dumps(report))
    print(f"kills survived: {report['kills_survived']}", file=sys.stderr)
    return 0 if report["passed"] else 1


def _reliability(args: argparse.Namespace) -> int:
    from services.tools.reliability import gather, write

    figures = json.loads((args.out / "reliability.json").read_text()) if args.render_only else gather(args.results)
    print(f"wrote {write(figures, args.out)}", file=sys.stderr)
    return 0
