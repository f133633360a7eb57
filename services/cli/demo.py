"""`rlhf-loop demo`: the main job on embedded defaults, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    demo = commands.add_parser("demo", help="the main job on embedded defaults, offline")
    demo.add_argument("--workdir", type=Path, default=Path("demo-output"), help="services' data and the report")
    demo.add_argument("--iterations", type=int, default=3)
    demo.add_argument(
        "--gold", metavar="MODULE:FUNCTION",
        help="the gold scorer (prompt, response) -> float that simulated annotators rank by and the report judges "
        "with (default services.sim.gold:friendly_and_on_topic; also :concise_and_complete, :on_topic_detail)",
    )  # fmt: skip
    demo.add_argument("--samples", type=int, default=4, help="answers per held-out prompt in the report")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from services.tools.demo import DEMO_GOLD, run_demo

    return run_demo(args.workdir, iterations=args.iterations, samples=args.samples, gold=args.gold or DEMO_GOLD)
