"""Where the loop is: each iteration's stage and what its stages produced, in a database.

Every stage writes its results here before the next starts, so a controller
killed at any point resumes at the first stage without a result.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, select

from services.core.database import Schema, open_database, upsert

STAGES = ("select", "tasks", "collect", "reward", "policy", "evaluate", "judge", "decide", "done")

metadata = MetaData()
iterations = Table(
    "iterations",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("stage", String(32), nullable=False),
    Column("record", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
SCHEMA = Schema("loop_state", metadata)  # version 1: no migrations yet


class LoopState:
    """`LoopState("sqlite:///loop-state.db")` or on PostgreSQL (`postgresql+psycopg://...`), like the store."""

    def __init__(self, url: str):
        self.engine = open_database(url, SCHEMA)

    def load(self, number: int) -> tuple[str, dict]:
        """(stage, record) of an iteration; a new one starts at "select" with an empty record."""
        with self.engine.connect() as db:
            row = db.execute(select(iterations).where(iterations.c.number == number)).first()
        return (row.stage, dict(row.record)) if row else (STAGES[0], {})

    def save(self, number: int, stage: str, record: dict) -> None:
        with self.engine.begin() as db:
            upsert(db, iterations, "number", {"number": number, "stage": stage, "record": record,
                                              "updated_at": datetime.now(UTC)})  # fmt: skip

    def history(self) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(select(iterations).order_by(iterations.c.number)).all()
        return [{"iteration": r.number, "stage": r.stage, **r.record} for r in rows]
