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
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)

from services.core.database import Schema, open_database, upsert
from services.core.rankings import Ranking

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
)
training_requests = Table(
    "training_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
)
SCHEMA = Schema("preference_store", metadata)  # version 1: no migrations yet


@dataclass(frozen=True)
class StoredPreference:
    annotation_id: int
    project_id: int
    task_id: int
    annotator: str
    ranking: Ranking
    policy_version: str = ""


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
    }


def _from_row(row) -> StoredPreference:
    ranking = Ranking(
        row.prompt,
        tuple(row.candidates),
        tuple(tuple(t) for t in row.tiers),
        annotator=row.annotator,
        source=f"labelstudio:annotation:{row.annotation_id}",
    )
    return StoredPreference(row.annotation_id, row.project_id, row.task_id, row.annotator, ranking, row.policy_version)


def _same(a: StoredPreference, b: StoredPreference) -> bool:
    return (a.task_id, a.annotator, a.ranking.prompt, a.ranking.candidates, a.ranking.tiers) == (
        b.task_id, b.annotator, b.ranking.prompt, b.ranking.candidates, b.ranking.tiers
    )  # fmt: skip


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


def pairwise_agreement(prefs: Iterable[StoredPreference]) -> dict:
    """Counts, inter-annotator agreement over shared pairs, and the merged (majority) preference per pair.

    Two annotators agree on a pair of candidates of one task when both ordered
    it the same way (ties and unranked pairs are left out).
    """
    votes: dict[tuple[int, str, str], dict[str, int]] = defaultdict(dict)  # (task, a, b) -> annotator -> +1/-1
    prefs = list(prefs)
    for p in prefs:
        rank = {i: level for level, tier in enumerate(p.ranking.tiers) for i in tier}
        for i, j in itertools.combinations(sorted(rank), 2):
            if rank[i] == rank[j]:
                continue
            a, b = sorted((p.ranking.candidates[i], p.ranking.candidates[j]))
            preferred_a = rank[i] < rank[j] if p.ranking.candidates[i] == a else rank[j] < rank[i]
            votes[(p.task_id, a, b)][p.annotator] = 1 if preferred_a else -1
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
