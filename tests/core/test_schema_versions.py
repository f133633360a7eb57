"""Schema versions: a store written by the previous release opens and upgrades; migrations run once, in order."""

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text
from sqlalchemy.engine import make_url

from labelstudio_backend.preference_store import PreferenceStore
from services.controller.loop_state import LoopState
from services.core.database import Schema, open_database, schema_versions
from services.core.errors import PreconditionError

RELEASES = Path(__file__).resolve().parents[1] / "fixtures" / "databases"


def load_release(url: str, name: str) -> None:
    """Recreate the database a release wrote, from its dump (made by that release's code)."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    script = (RELEASES / f"{name}-{dialect}.sql").read_text()
    if dialect == "sqlite":
        with sqlite3.connect(make_url(url).database) as db:
            db.executescript(script)
    else:
        u = make_url(url)
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as db:
            db.execute(script)


def versions(engine) -> dict[str, int]:
    with engine.connect() as db:
        return dict(db.execute(select(schema_versions.c.name, schema_versions.c.version)).all())


def test_a_database_the_previous_release_wrote_opens_with_its_data_and_is_versioned(database_url):
    load_release(database_url, "release-0.1.0")
    store, state = PreferenceStore(database_url), LoopState(database_url)
    stored = store.all()
    assert [(p.annotation_id, p.annotator, p.ranking.tiers, p.policy_version) for p in stored] == [
        (101, "annotator1", ((1,), (0,), (2,)), "policy-0001"),
        (102, "annotator2", ((0, 1), (2,)), "policy-0001"),
    ]
    assert store.pending_training_requests() == [1]
    assert [(r["iteration"], r["stage"]) for r in state.history()] == [(1, "done"), (2, "collect")]
    # Version 2 records how the annotator met each task; the rows from before hold nothing of it.
    assert versions(store.engine) == {"preference_store": 2, "loop_state": 1}
    assert [(p.shown_order, p.from_prediction, p.prediction_distance, p.lead_time_s) for p in stored] == [
        (None, False, None, None)
    ] * 2
    state.save(3, "select", {})  # and it takes new writes
    assert LoopState(database_url).load(3) == ("select", {})


def toy(version: int, calls: list | None = None) -> Schema:
    """A schema at `version` 1 or 2; version 2 adds a `label` column, with a default for the rows before it."""
    metadata = MetaData()
    columns = [Column("id", Integer, primary_key=True)]
    if version == 2:
        columns.append(Column("label", String(32), nullable=False, server_default="none"))
    Table("things", metadata, *columns)

    def add_label(db) -> None:
        if calls is not None:
            calls.append(threading.get_ident())
            time.sleep(0.5)  # a slow migration, as one over a big table is: the others arrive meanwhile
        db.execute(text("ALTER TABLE things ADD COLUMN label VARCHAR(32) NOT NULL DEFAULT 'none'"))

    return Schema("toy", metadata, (add_label,) if version == 2 else ())


def test_an_older_database_runs_the_migrations_it_lacks(database_url):
    old = open_database(database_url, toy(1))
    with old.begin() as db:
        db.execute(text("INSERT INTO things (id) VALUES (1)"))
    new = open_database(database_url, toy(2))
    with new.begin() as db:
        db.execute(text("INSERT INTO things (id, label) VALUES (2, 'fresh')"))
        assert db.execute(text("SELECT id, label FROM things ORDER BY id")).all() == [(1, "none"), (2, "fresh")]
    assert versions(new) == {"toy": 2}
    assert versions(open_database(database_url, toy(2))) == {"toy": 2}  # opening again changes nothing


def test_processes_opening_an_old_database_together_migrate_it_once(database_url):
    open_database(database_url, toy(1))
    calls, errors = [], []
    start = threading.Barrier(4)

    def open_new():
        start.wait()
        try:
            open_database(database_url, toy(2, calls))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_new) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(calls) == 1


def test_a_new_database_starts_at_the_current_version(database_url):
    assert versions(open_database(database_url, toy(2))) == {"toy": 2}


def test_a_database_from_a_newer_release_is_refused_not_downgraded(database_url):
    open_database(database_url, toy(2))
    with pytest.raises(PreconditionError, match="toy schema is at version 2, newer than this release's 1"):
        open_database(database_url, toy(1))
