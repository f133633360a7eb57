"""The preference store: one row per Label Studio annotation, in SQLite or PostgreSQL.

Keyed by annotation id, so webhook handling is idempotent: an update
replaces the row, a delete removes it, a repeated delivery changes nothing.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection

from services.core.database import Schema, open_database, upsert
from services.core.rankings import PreferencePair, Ranking, rankings_to_pairs

metadata = MetaData()
preferences = Table(
    "preferences",
    metadata,
    Column("annotation_id", Integer, primary_key=True, autoincrement=False),
    Column("project_id", Integer, nullable=False, index=True),
    Column("task_id", Integer, nullable=False, index=True),
    Column("annotator", String(255), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("candidates", JSON, nullable=False),
    Column("tiers", JSON, nullable=False),
    Column("policy_version", String(64), nullable=False, default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # How the annotator met the task (version 2): the order it was shown in, whether that was the
    # reward model's pre-ranking, how far the submission moved from it, and the time spent.
    Column("shown_order", JSON, nullable=True),
    Column("from_prediction", Boolean, nullable=False, server_default="0"),
    Column("prediction_version", String(64), nullable=True),
    Column("prediction_distance", Float, nullable=True),
    Column("lead_time_s", Float, nullable=True),
)
training_requests = Table(
    "training_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
)


def _add_annotation_context(db: Connection) -> None:
    """Version 1 -> 2: rows from before hold no display order, prediction or lead time (NULL / false)."""
    for column in (
        "shown_order JSON",
        "from_prediction BOOLEAN NOT NULL DEFAULT false",
        "prediction_version VARCHAR(64)",
        "prediction_distance FLOAT",
        "lead_time_s FLOAT",
    ):
        db.execute(text(f"ALTER TABLE preferences ADD COLUMN {column}"))


SCHEMA = Schema("preference_store", metadata, (_add_annotation_context,))


@dataclass(frozen=True)
class StoredPreference:
    annotation_id: int
    project_id: int
    task_id: int
    annotator: str
    ranking: Ranking
    policy_version: str = ""
    shown_order: tuple[int, ...] | None = None  # candidate indices as first shown, top (or left) first
    from_prediction: bool = False  # the task opened with the reward model's pre-ranking
    prediction_version: str | None = None  # the reward model version that pre-ranked it
    prediction_distance: float | None = None  # Kendall distance of the submission from it; 0 = untouched
    lead_time_s: float | None = None  # Label Studio's time on the annotation, in seconds

    @property
    def untouched_prediction(self) -> bool:
        """Submitted exactly as the reward model pre-ranked it: the model's echo, not the annotator's own view."""
        return self.from_prediction and self.prediction_distance == 0.0


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    removed: int


def _row(p: StoredPreference) -> dict:
    return {
        "annotation_id": p.annotation_id,
        "project_id": p.project_id,
        "task_id": p.task_id,
        "annotator": p.annotator,
        "prompt": p.ranking.prompt,
        "candidates": list(p.ranking.candidates),
        "tiers": [list(t) for t in p.ranking.tiers],
        "policy_version": p.policy_version,
        "updated_at": datetime.now(UTC),
        "shown_order": list(p.shown_order) if p.shown_order is not None else None,
        "from_prediction": p.from_prediction,
        "prediction_version": p.prediction_version,
        "prediction_distance": p.prediction_distance,
        "lead_time_s": p.lead_time_s,
    }


def _from_row(row) -> StoredPreference:
    ranking = Ranking(
        row.prompt,
        tuple(row.candidates),
        tuple(tuple(t) for t in row.tiers),
        annotator=row.annotator,
        source=f"labelstudio:annotation:{row.annotation_id}",
    )
    return StoredPreference(
        row.annotation_id, row.project_id, row.task_id, row.annotator, ranking, row.policy_version,
        shown_order=tuple(row.shown_order) if row.shown_order is not None else None,
        from_prediction=bool(row.from_prediction), prediction_version=row.prediction_version,
        prediction_distance=row.prediction_distance, lead_time_s=row.lead_time_s,
    )  # fmt: skip


def _content(r: Ranking) -> tuple:
    return (r.annotator, r.prompt, r.candidates, r.tiers)


def _same(a: StoredPreference, b: StoredPreference) -> bool:
    """Equal but for the row's own id and time: a repeated delivery is no change."""
    return _comparable(a) == _comparable(b)


def _comparable(p: StoredPreference) -> tuple:
    return (p.task_id, p.annotator, p.ranking.prompt, p.ranking.candidates, p.ranking.tiers, p.policy_version,
            p.shown_order, p.from_prediction, p.prediction_version, p.prediction_distance, p.lead_time_s)  # fmt: skip


class PreferenceStore:
    """`PreferenceStore("sqlite:///prefs.db")` or `PreferenceStore("postgresql+psycopg://user@host/rlhf")`."""

    def __init__(self, url: str):
        self.engine = open_database(url, SCHEMA)

    def upsert(self, p: StoredPreference) -> bool:
        """Insert or replace by annotation id; False when the stored row was already identical."""
        with self.engine.begin() as db:
            existing = db.execute(select(preferences).where(preferences.c.annotation_id == p.annotation_id)).first()
            if existing is not None and _same(_from_row(existing), p):
                return False
            upsert(db, preferences, "annotation_id", _row(p))  # a webhook and a sync at once: both land
        return True

    def delete(self, annotation_id: int) -> bool:
        with self.engine.begin() as db:
            return db.execute(delete(preferences).where(preferences.c.annotation_id == annotation_id)).rowcount > 0

    def all(self, project_id: int | None = None) -> list[StoredPreference]:
        query = select(preferences).order_by(preferences.c.annotation_id)
        if project_id is not None:
            query = query.where(preferences.c.project_id == project_id)
        with self.engine.connect() as db:
            return [_from_row(row) for row in db.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as db:
            return db.execute(select(func.count()).select_from(preferences)).scalar_one()

    def rankings(self, project_id: int | None = None) -> list[Ranking]:
        return [p.ranking for p in self.all(project_id)]

    def replace_project(self, project_id: int, current: Iterable[StoredPreference]) -> SyncReport:
        """Make the project's rows equal `current` (Label Studio's export): add, update, remove."""
        wanted = {p.annotation_id: p for p in current}
        stored = {p.annotation_id: p for p in self.all(project_id)}
        added = updated = 0
        for annotation_id, p in wanted.items():
            if annotation_id not in stored:
                added += self.upsert(p)
            elif not _same(stored[annotation_id], p):
                updated += self.upsert(p)
        removed = sum(self.delete(a) for a in stored.keys() - wanted.keys())
        return SyncReport(added, updated, removed)

    def add_new(self, project_id: int, rankings: Iterable[Ranking]) -> int:
        """Add the rankings the project does not hold yet (same annotator, prompt, candidates and order); how many.

        For rows of no Label Studio annotation (imports): ids, and a task id per
        prompt, are allocated below the smallest in the store inside one
        transaction; a concurrent writer that took them first makes the plain
        INSERT fail, and nothing is written, rather than one overwriting the other.
        """
        with self.engine.begin() as db:
            held = [_from_row(r) for r in db.execute(select(preferences).where(preferences.c.project_id == project_id))]
            seen = {_content(p.ranking) for p in held}
            tasks = {p.ranking.prompt: p.task_id for p in held}
            lowest_id, lowest_task = db.execute(
                select(func.min(preferences.c.annotation_id), func.min(preferences.c.task_id))
            ).one()
            next_id, next_task = min(lowest_id or 0, 0) - 1, min(lowest_task or 0, 0) - 1
            rows = []
            for ranking in rankings:
                if _content(ranking) in seen:
                    continue
                seen.add(_content(ranking))
                if ranking.prompt not in tasks:
                    tasks[ranking.prompt], next_task = next_task, next_task - 1
                rows.append(
                    _row(StoredPreference(next_id, project_id, tasks[ranking.prompt], ranking.annotator, ranking))
                )
                next_id -= 1
            if rows:
                db.execute(preferences.insert(), rows)
        return len(rows)

    # -- training requests (the UI's "start training"; the controller consumes them) -------------
    def request_training(self, project_id: int) -> int:
        with self.engine.begin() as db:
            result = db.execute(
                training_requests.insert().values(project_id=project_id, requested_at=datetime.now(UTC))
            )
            return int(result.inserted_primary_key[0])

    def pending_training_requests(self) -> list[int]:
        with self.engine.connect() as db:
            query = select(training_requests.c.id).where(training_requests.c.consumed_at.is_(None))
            return [row.id for row in db.execute(query)]

    def consume_training_requests(self, ids: list[int]) -> None:
        with self.engine.begin() as db:
            db.execute(
                training_requests.update().where(training_requests.c.id.in_(ids)).values(consumed_at=datetime.now(UTC))
            )


# (task id, the pair's two candidate texts in sorted order): one pair of one task the annotators vote on.
PairKey = tuple[int, str, str]
# annotator -> (their annotation, the pair as they ordered it: chosen over rejected)
Voters = dict[str, tuple[StoredPreference, PreferencePair]]


def pair_key(task_id: int, a: str, b: str) -> PairKey:
    low, high = sorted((a, b))
    return task_id, low, high


def pair_votes(prefs: Iterable[StoredPreference]) -> dict[PairKey, Voters]:
    """Every strict pair of every task, and how each annotator ordered it.

    One vote per annotator and pair, their later annotation of the task
    winning (rows come in annotation-id order); ties and unranked candidates
    cast no vote. Two candidates with the same text are left out: no
    preference between them means anything or can be learned.
    """
    votes: dict[PairKey, Voters] = defaultdict(dict)
    for p in prefs:
        for pair in rankings_to_pairs(p.ranking):
            if pair.chosen != pair.rejected:
                votes[pair_key(p.task_id, pair.chosen, pair.rejected)][p.annotator] = (p, pair)
    return votes


def signed_votes(prefs: Iterable[StoredPreference]) -> dict[PairKey, dict[str, int]]:
    """`pair_votes` as annotator -> +1 (the key's first text preferred) or -1."""
    return {
        key: {annotator: 1 if pair.chosen == key[1] else -1 for annotator, (_, pair) in voters.items()}
        for key, voters in pair_votes(prefs).items()
    }


def pairwise_agreement(prefs: Iterable[StoredPreference]) -> dict:
    """Counts, inter-annotator agreement over shared pairs, and the merged (majority) preference per pair.

    Two annotators agree on a pair of candidates of one task when both ordered
    it the same way (ties, unranked pairs and pairs of identical texts are left out).
    """
    prefs = list(prefs)
    votes = signed_votes(prefs)
    agree = compared = 0
    merged = []
    for (task_id, a, b), by_annotator in votes.items():
        for x, y in itertools.combinations(by_annotator.values(), 2):
            compared += 1
            agree += x == y
        total = sum(by_annotator.values())
        if total:
            winner, loser = (a, b) if total > 0 else (b, a)
            merged.append({"task_id": task_id, "chosen": winner, "rejected": loser, "votes": len(by_annotator)})
    return {
        "annotations": len(prefs),
        "annotators": len({p.annotator for p in prefs}),
        "tasks": len({p.task_id for p in prefs}),
        "pairs": len(votes),
        "compared_pairs": compared,
        "agreement": agree / compared if compared else None,
        "merged": merged,
    }
