"""`rlhf-loop annotate simulate`: Label Studio annotations without people."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from services.cli.options import add_labelstudio_options, labelstudio_login


def register(commands: argparse._SubParsersAction) -> None:
    """Add `annotate simulate`."""
    annotate = commands.add_parser("annotate", help="annotation without people").add_subparsers(
        dest="annotate_command", required=True
    )
    simulate = annotate.add_parser("simulate", help="real Label Studio users ranking by a gold scorer plus noise")
    simulate.add_argument("--project", type=int, required=True)
    simulate.add_argument("--annotators", type=int, default=3)
    simulate.add_argument(
        "--gold", default="services.sim.gold:vader_positivity", help="module:function(prompt, response)"
    )
    simulate.add_argument("--temperature", type=float, help="Gumbel noise in gold units (default: calibrated)")
    simulate.add_argument(
        "--target-agreement", type=float, default=0.73, help="inter-annotator agreement the noise is tuned to"
    )
    simulate.add_argument("--limit", type=int, help="tasks per annotator (default: all it has not done)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--anchoring",
        type=_probability,
        default=0.0,
        help="chance that an annotator submits a shown pre-ranking unchanged (default 0)",
    )
    add_labelstudio_options(simulate)
    simulate.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from labelstudio_backend.labelstudio_server import default_data_dir
    from labelstudio_backend.project_setup import labelstudio_client
    from services.core.loader import load_function
    from services.sim.simulated_annotators import (
        calibrate_temperature,
        project_gold_groups,
        simulated_annotators,
    )

    url, token = labelstudio_login(args)
    gold = load_function(args.gold, "gold scorer")
    temperature = args.temperature
    if temperature is None:  # tuned to the candidates at hand, so agreement stays on target
        groups = project_gold_groups(labelstudio_client(url, token), args.project, gold)
        temperature = calibrate_temperature(groups, args.target_agreement) if groups else 0.26
    accounts = Path(args.data_dir or default_data_dir()) / "simulated-annotators.json"
    annotators = simulated_annotators(url, token, accounts, args.annotators, temperature, args.seed, args.anchoring)
    counts = {a.user_id: len(a.annotate(args.project, gold, args.limit)) for a in annotators}
    print(json.dumps({"temperature": temperature, "annotations_by_user": counts}))
    return 0


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value
