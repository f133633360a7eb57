"""`rlhf-loop prefs stats|quality|export|import`: the preference store, its annotators, and the files trainers read."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from services.core.env import AUTH_TOKEN_ENV, REWARD_TOKEN_ENV

STORE_DEFAULT = "sqlite:///preferences.db"
# preference_export.FORMATS and preference_import.IMPORT_PROJECT, spelled out: importing those modules
# to build the parser would load SQLAlchemy for every command (~0.5 s).
FORMATS = ("trl", "openrlhf", "listwise")
IMPORT_PROJECT = 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `prefs stats`, `quality`, `export` and `import`."""
    prefs = commands.add_parser("prefs", help="the preference store").add_subparsers(
        dest="prefs_command", required=True
    )
    _add_stats(prefs.add_parser("stats", help="counts, inter-annotator agreement, merged preferences"))
    _add_quality(
        prefs.add_parser("quality", help="per-annotator agreement, speed, anchoring on the pre-ranking, position bias")
    )
    _add_export(prefs.add_parser("export", help="preference pairs (TRL, OpenRLHF) or rankings as dataset files"))
    _add_import(prefs.add_parser("import", help="preference pairs from a TRL, OpenRLHF or HH file, all or nothing"))


def _add_stats(stats: argparse.ArgumentParser) -> None:
    stats.add_argument("--store", default=STORE_DEFAULT)
    stats.add_argument("--project", type=int)
    stats.add_argument("--merged", action="store_true", help="include the merged preference of every pair")
    stats.set_defaults(func=_stats)


def _stats(args: argparse.Namespace) -> int:
    from labelstudio_backend.preference_store import PreferenceStore, pairwise_agreement

    report = pairwise_agreement(PreferenceStore(args.store).all(args.project))
    if not args.merged:
        report.pop("merged")
    print(json.dumps(report, indent=2))
    return 0


def _add_quality(quality: argparse.ArgumentParser) -> None:
    quality.add_argument("--store", default=STORE_DEFAULT, help="SQLAlchemy URL of the preference store")
    quality.add_argument("--project", type=int, help="one Label Studio project (default: every row)")
    quality.add_argument(
        "--reward-url", help="reward service HOST:PORT: adds the model's agreement with each annotator"
    )
    # The token travels in the environment, as for the policy service's and backend's reward client.
    quality.add_argument(
        "--reward-tls-ca",
        type=Path,
        help=f"CA certificate of a TLS reward service (token: ${REWARD_TOKEN_ENV}, else ${AUTH_TOKEN_ENV})",
    )
    quality.add_argument("--reward-version", default="", help="score with this reward version (default: active)")
    quality.add_argument("--timeout-s", type=float, default=60.0, help="deadline of each Rank call")
    quality.add_argument("--json", action="store_true", help="the full report as JSON, not a table")
    quality.set_defaults(func=_quality)


def _quality(args: argparse.Namespace) -> int:
    import grpc

    from labelstudio_backend.annotator_quality import annotator_quality, reward_scores
    from labelstudio_backend.annotator_quality_table import render_table
    from labelstudio_backend.preference_store import PreferenceStore
    from services.reward.client import RewardClient

    prefs = PreferenceStore(args.store).all(args.project)
    scores, version = None, None
    if args.reward_url:
        token = os.environ.get(REWARD_TOKEN_ENV) or os.environ.get(AUTH_TOKEN_ENV) or None
        options = {"token": token, "tls_ca": args.reward_tls_ca, "timeout_s": args.timeout_s}
        try:
            with RewardClient(args.reward_url, **options) as client:
                scores, version = reward_scores(prefs, client, args.reward_version)
        except grpc.RpcError as error:
            sys.exit(f"rlhf-loop: reward service {args.reward_url}: {error.code().name}: {error.details()}")
    report = annotator_quality(prefs, scores, version or None)
    if args.json:
        print(json.dumps(_rounded(report.to_dict() | {"project_id": args.project}), indent=2))
    else:
        print(render_table(report, args.project))
    return 0


def _rounded(value: object) -> object:
    """Four decimals are plenty for shares whose intervals are wider than that."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _add_export(export: argparse.ArgumentParser) -> None:
    export.add_argument("--format", choices=FORMATS, default="trl", help="pairs for TRL or OpenRLHF, or whole rankings")
    export.add_argument("--out", type=Path, required=True, help="directory: new, empty, or an earlier export")
    export.add_argument("--store", default=STORE_DEFAULT, help="SQLAlchemy URL of the preference store")
    export.add_argument("--project", type=int, help="one project (default: every row)")
    export.add_argument("--merged", action="store_true", help="one row per pair: the annotators' majority")
    export.add_argument("--min-agreement", type=float, default=0.0, help="keep pairs this share of voters agrees on")
    export.add_argument("--test-share", type=float, default=0.1, help="share of prompts in the test split")
    export.add_argument("--seed", type=int, default=0, help="which prompts are held out")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    import datasets

    from labelstudio_backend.preference_export import export_preferences
    from labelstudio_backend.preference_store import PreferenceStore

    datasets.disable_progress_bars()  # the report below is the command's output
    report = export_preferences(
        PreferenceStore(args.store).all(args.project),
        args.out,
        data_format=args.format,
        merged=args.merged,
        min_agreement=args.min_agreement,
        test_share=args.test_share,
        seed=args.seed,
    )
    print(json.dumps(asdict(report), indent=2))
    return 0


def _add_import(file_import: argparse.ArgumentParser) -> None:
    file_import.add_argument("file", type=Path, help=".jsonl, .json (an array of rows) or .parquet")
    file_import.add_argument("--store", default=STORE_DEFAULT, help="SQLAlchemy URL of the preference store")
    file_import.add_argument(
        "--project", type=int, default=IMPORT_PROJECT, help="0 or below: never a Label Studio project (default: 0)"
    )
    file_import.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from labelstudio_backend.preference_import import import_file
    from labelstudio_backend.preference_store import PreferenceStore

    print(json.dumps(asdict(import_file(PreferenceStore(args.store), args.file, args.project)), indent=2))
    return 0
