"""`rlhf-loop loop run|watch|report|status|history`: the iteration controller."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add `loop` and its sub-commands."""
    loop = commands.add_parser("loop", help="the iteration controller").add_subparsers(
        dest="loop_command", required=True
    )
    run = loop.add_parser("run", help="run or resume the configured iterations")
    run.add_argument("--config", type=Path, required=True, help="loop.toml")
    run.set_defaults(func=_run)
    watch = loop.add_parser("watch", help="run an iteration on each START_TRAINING from the backend or schedule")
    watch.add_argument("--config", type=Path, required=True)
    watch.add_argument("--every-s", type=float, help="also start an iteration every this many seconds")
    watch.set_defaults(func=_watch)
    report = loop.add_parser("report", help="judge the policies by the gold scorer; write report files")
    report.add_argument("--config", type=Path, required=True)
    report.add_argument("--out", type=Path, default=Path("loop-report"), help="folder for the report files")
    report.add_argument("--samples", type=int, default=4, help="answers per held-out prompt and version")
    report.set_defaults(func=_report)
    for name, text in (("status", "the current iteration and stage"), ("history", "every iteration's results")):
        view = loop.add_parser(name, help=text)
        view.add_argument("--config", type=Path, required=True)
        view.set_defaults(func=_history, command_name=name)


def _records(history: list[dict]) -> str:
    """The iterations' records as JSON, less the selected prompts (long, and in the state for who needs them)."""
    return json.dumps([{k: v for k, v in r.items() if k != "selected"} for r in history], indent=2)


def _run(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    loop = RlhfLoop(LoopConfig.from_toml(args.config))
    print(json.dumps(loop.setup()), file=sys.stderr)
    print(_records(loop.execute()))
    return 0


def _watch(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    RlhfLoop(LoopConfig.from_toml(args.config)).watch(every_s=args.every_s)
    return 0


def _report(args: argparse.Namespace) -> int:
    from services.controller.loop import RlhfLoop
    from services.controller.loop_config import LoopConfig

    report = RlhfLoop(LoopConfig.from_toml(args.config)).report(args.out, samples=args.samples)
    print(json.dumps({k: report[k] for k in ("gold_win_rate", "gold_win_rate_ci", "targets_met")}))
    print(f"report written to {args.out}/report.html", file=sys.stderr)
    return 0


def _history(args: argparse.Namespace) -> int:
    from services.controller.loop_config import LoopConfig
    from services.controller.loop_state import LoopState

    history = LoopState(LoopConfig.from_toml(args.config).state_url).history()
    if args.command_name == "status":
        history = history[-1:]
    print(_records(history))
    return 0
