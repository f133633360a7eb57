"""The databases the preference store and the loop state live in: a SQLite file, or a PostgreSQL server.

`sqlite:///path.db` suits one machine. Where several processes or hosts
share the state (the backend's webhooks, `project sync`, the controller),
use PostgreSQL: `postgresql+psycopg://user:password@host:5432/rlhf`.
"""

from __future__ import annotations

from sqlalchemy import MetaData, Table, create_engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from services.core.errors import InvalidRequestError

SQLITE_BUSY_TIMEOUT_S = 30  # a writer waits this long for another's lock instead of failing at once
SCHEMA_LOCK = 0x726C6866  # a PostgreSQL advisory lock key ("rlhf"): one process creates the tables at a time
INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}  # the databases whose upsert is tested


def open_database(url: str, metadata: MetaData) -> Engine:
    """An engine on `url` with `metadata`'s tables created if missing, safe when processes start together."""
    if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy would reach for psycopg2, not installed
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if make_url(url).get_backend_name() not in INSERTS:
        raise InvalidRequestError(
            f"{url.split(':', 1)[0]}: the store and the loop state run on sqlite:/// or postgresql://"
        )
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if url.startswith("sqlite") else {}
    engine = create_engine(url, future=True, pool_pre_ping=True, connect_args=connect_args)
    with engine.begin() as db:
        if engine.dialect.name == "postgresql":
            # Two processes creating the same table at once collide in PostgreSQL's catalog
            # (a unique violation on pg_type); the lock makes the second wait, then find it.
            db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        # IF NOT EXISTS in the statement itself: create_all's look-then-create races on SQLite.
        for table in metadata.sorted_tables:
            db.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                db.execute(CreateIndex(index, if_not_exists=True))
    return engine


def upsert(db: Connection, table: Table, key: str, values: dict) -> None:
    """Insert the row, or update the one with the same `key`, in one statement.

    A select-then-insert lets two concurrent writers of one key both insert
    and the second fail; INSERT ... ON CONFLICT DO UPDATE cannot.
    """
    statement = INSERTS[db.dialect.name](table).values(**values)
    db.execute(
        statement.on_conflict_do_update(
            index_elements=[key], set_={name: statement.excluded[name] for name in values if name != key}
        )
    )
