"""The databases the preference store and the loop state live in: a SQLite file, or a PostgreSQL server.

`sqlite:///path.db` suits one machine. Where several processes or hosts
share the state (the backend's webhooks, `project sync`, the controller),
use PostgreSQL: `postgresql+psycopg://user:password@host:5432/rlhf`.

Each schema (the store's, the loop state's) has a version, recorded in
`schema_versions`. Opening a database brings it to the code's version: a new
one gets the tables as they are now, an older one runs the migrations it
lacks, in order, in one transaction that holds a lock against processes
opening it at the same moment. A database written by a newer release is
refused, never downgraded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from services.core.errors import InvalidRequestError, PreconditionError

SQLITE_BUSY_TIMEOUT_S = 30  # a writer waits this long for another's lock instead of failing at once
SCHEMA_LOCK = 0x726C6866  # a PostgreSQL advisory lock key ("rlhf"): one process creates the tables at a time
INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}  # the databases whose upsert is tested


versions_metadata = MetaData()
schema_versions = Table(
    "schema_versions",
    versions_metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)


@dataclass(frozen=True)
class Schema:
    """Tables as the code has them now, and the migrations that bring an older database there.

    `migrations[i]` takes version i + 1 to i + 2, so the current version is
    1 + len(migrations). Version 1 is the schema of the releases before
    versions were recorded: a database without a row here but with the
    tables is at version 1.
    """

    name: str
    metadata: MetaData
    migrations: tuple[Callable[[Connection], None], ...] = ()

    @property
    def version(self) -> int:
        return 1 + len(self.migrations)


def open_database(url: str, schema: Schema) -> Engine:
    """An engine on `url` with `schema` created or migrated to its version, safe when processes start together."""
    if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy would reach for psycopg2, not installed
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if make_url(url).get_backend_name() not in INSERTS:
        raise InvalidRequestError(
            f"{url.split(':', 1)[0]}: the store and the loop state run on sqlite:/// or postgresql://"
        )
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if url.startswith("sqlite") else {}
    engine = create_engine(url, future=True, pool_pre_ping=True, connect_args=connect_args)
    with engine.begin() as db:
        _lock_schema(db, schema.name)
        found = db.execute(select(schema_versions.c.version).where(schema_versions.c.name == schema.name)).scalar()
        if found is None:
            existing = set(inspect(db).get_table_names()) & set(schema.metadata.tables)
            found = 1 if existing else schema.version  # tables from before versions, or a new database
            db.execute(schema_versions.insert().values(name=schema.name, version=found))
        if found > schema.version:
            raise PreconditionError(
                f"{schema.name} schema is at version {found}, newer than this release's {schema.version}: "
                "run the rlhf-loop release that wrote it, or a newer one"
            )
        for migrate in schema.migrations[found - 1 :]:
            migrate(db)
        _create_missing(db, schema.metadata)  # a new database, or tables a migration leaves to the definitions
        if found < schema.version:
            db.execute(
                schema_versions.update().where(schema_versions.c.name == schema.name).values(version=schema.version)
            )
    return engine


def _lock_schema(db: Connection, name: str) -> None:
    """Hold the database's schema lock until the transaction ends: one process creates or migrates at a time."""
    if db.dialect.name == "postgresql":
        # Two processes creating the same table at once collide in PostgreSQL's catalog
        # (a unique violation on pg_type); the lock makes the second wait, then find it.
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        _create_missing(db, versions_metadata)
    else:
        # pysqlite runs DDL outside a transaction and begins one at the first write; a write,
        # even of no row, takes SQLite's write lock (waiting out another holder for the busy
        # timeout), where reads first would let two openers both migrate.
        _create_missing(db, versions_metadata)
        db.execute(
            schema_versions.update().where(schema_versions.c.name == name).values(version=schema_versions.c.version)
        )


def _create_missing(db: Connection, metadata: MetaData) -> None:
    # IF NOT EXISTS in the statement itself: create_all's look-then-create races on SQLite.
    for table in metadata.sorted_tables:
        db.execute(CreateTable(table, if_not_exists=True))
        for index in table.indexes:
            db.execute(CreateIndex(index, if_not_exists=True))


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
