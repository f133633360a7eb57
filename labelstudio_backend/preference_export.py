"""The preference store as files trainers read: TRL / OpenRLHF preference pairs, or whole rankings.

Pairs are TRL's conversational preference form, which OpenRLHF's RewardDataset
also reads (`--data.prompt_key prompt --data.apply_chat_template`): `prompt` a
list with one user message, `chosen` / `rejected` lists with one assistant
message, `margin` from the rank gap, then where the pair came from. The split
is by prompt, the held-out prompts the project's reward trainer would pick
with the same share and seed, so a prompt never sits on both sides.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from labelstudio_backend.preference_store import StoredPreference, Voters, pair_key, pair_votes, pairwise_agreement
from services.core.errors import InvalidRequestError, PreconditionError
from services.core.rankings import PreferencePair, group_pairs_by_prompt, rankings_to_pairs, split_by_prompt

FORMATS = ("trl", "openrlhf", "listwise")
MANIFEST = "export.json"  # marks a directory as an export, so a later export may replace it
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ExportReport:
    out: str
    format: str
    view: str  # "annotations": one row per annotator's pair; "merged": one per pair, the majority's
    train_rows: int
    test_rows: int
    train_prompts: int
    test_prompts: int


def _agreeing(voters: Voters, chosen: str) -> list[tuple[StoredPreference, PreferencePair]]:
    """The votes that preferred `chosen`."""
    return [(pref, pair) for pref, pair in voters.values() if pair.chosen == chosen]


def _messages(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def _pair_row(pair: PreferencePair, margin: float, rank_gap: float, agreeing: int, votes: int) -> dict:
    return {
        "prompt": _messages("user", pair.prompt),
        "chosen": _messages("assistant", pair.chosen),
        "rejected": _messages("assistant", pair.rejected),
        "margin": margin,
        "rank_gap": rank_gap,
        "agreement": agreeing / votes,  # share of the pair's voters who ordered it this way
        "votes": votes,  # annotators who ordered this pair (ties cast no vote)
    }


def annotation_pair_rows(prefs: Sequence[StoredPreference]) -> list[dict]:
    """Every annotator's strict pairs, one row each, with how many of the pair's voters agree."""
    votes = pair_votes(prefs)
    rows = []
    for pref in prefs:
        for pair in rankings_to_pairs(pref.ranking):
            voters = votes.get(pair_key(pref.task_id, pair.chosen, pair.rejected), {})
            if pref.annotator not in voters or voters[pref.annotator][0] is not pref:
                continue  # identical texts, or a vote the annotator's later annotation of the task replaced
            agreeing = len(_agreeing(voters, pair.chosen))
            row = _pair_row(pair, float(pair.rank_gap - 1), pair.rank_gap, agreeing, len(voters))
            who = {"annotation_id": pref.annotation_id, "annotator": pref.annotator}
            rows.append(row | _source(pref) | who | {"untouched_prediction": pref.untouched_prediction})
    return rows


def merged_pair_rows(prefs: Sequence[StoredPreference]) -> list[dict]:
    """One row per pair the voters did not split evenly: `pairwise_agreement`'s majority, with its margin.

    The margin and rank gap are the means over the majority's votes; the
    annotation ids are theirs.
    """
    votes = pair_votes(prefs)
    rows = []
    for merged in pairwise_agreement(prefs)["merged"]:
        voters = votes.get(pair_key(merged["task_id"], merged["chosen"], merged["rejected"]))
        if not voters:
            continue  # two candidates with the same text (see _votes)
        majority = _agreeing(voters, merged["chosen"])
        first, pair = majority[0]
        rank_gap = sum(p.rank_gap for _, p in majority) / len(majority)
        row = _pair_row(pair, rank_gap - 1, rank_gap, len(majority), len(voters))
        who = {"annotation_ids": [pref.annotation_id for pref, _ in majority], "annotator": "majority"}
        rows.append(row | _source(first) | who)
    return rows


def _source(pref: StoredPreference) -> dict:
    # The store knows no loop iteration; `rlhf-loop loop history` lists the policy version of each.
    return {"project_id": pref.project_id, "task_id": pref.task_id, "policy_version": pref.policy_version}


def ranking_rows(prefs: Sequence[StoredPreference]) -> list[dict]:
    """Whole rankings, ties kept: tiers of candidate indices best first; unsorted candidates are in no tier."""
    return [
        {
            "prompt": pref.ranking.prompt,
            "candidates": list(pref.ranking.candidates),
            "tiers": [list(tier) for tier in pref.ranking.tiers],
            "annotator": pref.annotator,
            "annotation_id": pref.annotation_id,
            **_source(pref),
            "untouched_prediction": pref.untouched_prediction,
        }
        for pref in prefs
    ]


def heldout_prompts(prefs: Sequence[StoredPreference], test_share: float, seed: int) -> set[str]:
    """The prompts of the test split: the reward trainer's held-out prompts for this share and seed.

    Drawn from every prompt with a strict preference before any filter, so
    the merged view, an agreement filter and the rankings all split alike.
    """
    if test_share == 0:
        return set()
    split = split_by_prompt(group_pairs_by_prompt(p.ranking for p in prefs), test_share, seed)
    return {pair.prompt for pair in split.heldout}


def _prompt_of(row: dict) -> str:
    return row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][0]["content"]


def export_preferences(
    prefs: Sequence[StoredPreference],
    out: Path,
    *,
    data_format: str = "trl",
    merged: bool = False,
    min_agreement: float = 0.0,
    test_share: float = 0.1,
    seed: int = 0,
) -> ExportReport:
    """Write `prefs` into `out` as JSONL, parquet and a `save_to_disk` DatasetDict, split by prompt.

    `out` may be missing, empty, or an earlier export (replaced whole);
    anything else is refused rather than overwritten.
    """
    if data_format not in FORMATS:
        raise InvalidRequestError(f"format must be one of {', '.join(FORMATS)}; got {data_format!r}")
    if not 0 <= test_share < 1:
        raise InvalidRequestError(f"test share must be in [0, 1); got {test_share}")
    if not 0 <= min_agreement <= 1:
        raise InvalidRequestError(f"min agreement must be in [0, 1]; got {min_agreement}")
    if data_format == "listwise" and (merged or min_agreement > 0):
        # A majority of pairs need not form a ranking (cycles), and agreement is a property of a pair.
        raise InvalidRequestError("--merged and --min-agreement apply to pairs, not to --format listwise")
    out = out.resolve()  # "." too has a parent to build the export beside
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST).is_file())):
        raise PreconditionError(f"{out} is neither empty nor an earlier export ({MANIFEST}); refusing to overwrite it")
    if data_format == "listwise":
        rows = ranking_rows(prefs)
    else:
        rows = merged_pair_rows(prefs) if merged else annotation_pair_rows(prefs)
        rows = [row for row in rows if row["agreement"] >= min_agreement]
    if not rows:
        raise PreconditionError(f"nothing to export: {len(prefs)} annotations gave no {data_format} rows")
    test = heldout_prompts(prefs, test_share, seed)
    splits = {
        "train": [r for r in rows if _prompt_of(r) not in test],
        "test": [r for r in rows if _prompt_of(r) in test],
    }
    report = ExportReport(
        out=str(out),
        format=data_format,
        view="rankings" if data_format == "listwise" else "merged" if merged else "annotations",
        train_rows=len(splits["train"]),
        test_rows=len(splits["test"]),
        train_prompts=len({_prompt_of(r) for r in splits["train"]}),
        test_prompts=len({_prompt_of(r) for r in splits["test"]}),
    )
    manifest = asdict(report) | {
        "min_agreement": min_agreement,
        "test_share": test_share,
        "seed": seed,
        "store_agreement": pairwise_agreement(prefs)["agreement"],
        "created_at": datetime.now(UTC).isoformat(),
    }
    _write(out, splits, manifest)
    return report


def _write(out: Path, splits: dict[str, list[dict]], manifest: dict) -> None:
    """Build the export in a sibling directory and move it into place: a failed export leaves no half."""
    from datasets import Dataset, DatasetDict

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        # One dataset, then selections of it: both splits get the same schema even when one is empty.
        full = Dataset.from_list(splits["train"] + splits["test"])
        n_train = len(splits["train"])
        # Index lists, not ranges: datasets refuses an empty range that starts at the end (an empty test split).
        spans = {"train": range(n_train), "test": range(n_train, len(full))}
        datasets = {name: full.select(list(span)) for name, span in spans.items()}
        # datasets writes no shard at all for an empty split, and then cannot load it back: ask for one.
        empty = {name: 1 for name, split in datasets.items() if len(split) == 0}
        DatasetDict(datasets).save_to_disk(str(staging), num_shards=empty)
        for name in SPLITS:
            with (staging / f"{name}.jsonl").open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in splits[name])
            datasets[name].to_parquet(str(staging / f"{name}.parquet"))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
