"""Where the loop is: each iteration's stage and what its stages produced, in a database.

Every stage writes its results here before the next starts, so a controller
killed at any point resumes at the first stage without a result.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, create_engine, select

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


class LoopState:
    def __init__(self, url: str):
        self.engine = create_engine(url, future=True)
        metadata.create_all(self.engine)

    def load(self, number: int) -> tuple[str, dict]:
        """(stage, record) of an iteration; a new one starts at "select" with an empty record."""
        with self.engine.connect() as db:
            row = db.execute(select(iterations).where(iterations.c.number == number)).first()
        return (row.stage, dict(row.record)) if row else (STAGES[0], {})

    def save(self, number: int, stage: str, record: dict) -> None:
        values = {"stage": stage, "record": record, "updated_at": datetime.now(UTC)}
        with self.engine.begin() as db:
            if db.execute(select(iterations.c.number).where(iterations.c.number == number)).first():
                db.execute(iterations.update().where(iterations.c.number == number).values(**values))
            else:
                db.execute(iterations.insert().values(number=number, **values))

    def history(self) -> list[dict]:
        with self.engine.connect() as db:
            rows = db.execute(select(iterations).order_by(iterations.c.number)).all()
        return [{"iteration": r.number, "stage": r.stage, **r.record} for r in rows]
