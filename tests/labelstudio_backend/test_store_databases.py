"""The preference store and the loop state on both databases: SQLite and a real PostgreSQL server."""

import dataclasses
import json
import threading

import pytest

from labelstudio_backend.preference_store import PreferenceStore, StoredPreference
from services.controller.loop_state import LoopState
from services.core.errors import InvalidRequestError
from tests.labelstudio_backend.test_labelstudio_results import parse, ranker

ORDERS = (["c0", "c1", "c2", "c3"], ["c3", "c2", "c1", "c0"])


def preference(annotation_id: int, order: list[str]) -> StoredPreference:
    return StoredPreference(annotation_id, 1, annotation_id, f"ann{annotation_id % 3}", parse(ranker({"rank": order})))


def run_together(*jobs) -> list[BaseException]:
    """Run the jobs in threads started at the same moment; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        try:
            job()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_how_the_annotator_met_the_task_round_trips_and_a_change_of_it_is_an_update(database_url):
    store = PreferenceStore(database_url)
    plain = preference(1, ORDERS[0])
    met = dataclasses.replace(plain, shown_order=(2, 0, 3, 1), from_prediction=True, prediction_version="reward-0002",
                              prediction_distance=0.0, lead_time_s=31.5)  # fmt: skip
    assert store.upsert(met) and not store.upsert(met)
    (stored,) = store.all()
    assert dataclasses.replace(stored, ranking=met.ranking) == met and stored.untouched_prediction
    assert store.upsert(dataclasses.replace(met, lead_time_s=40.0))  # Label Studio adds the time of an update
    assert PreferenceStore(database_url).all()[0].lead_time_s == 40.0
    assert store.upsert(plain) and not store.all()[0].untouched_prediction


def test_webhooks_and_a_sync_at_once_lose_nothing(database_url):
    # The backend (webhooks) and `project sync` are separate processes with their own connections.
    webhooks, sync = PreferenceStore(database_url), PreferenceStore(database_url)
    exported = [preference(i, ORDERS[1]) for i in range(1, 121)]  # Label Studio's export: every annotation

    def deliver():
        for i in range(1, 121):
            webhooks.upsert(preference(i, ORDERS[1]))

    assert run_together(deliver, lambda: sync.replace_project(1, exported)) == []
    stored = PreferenceStore(database_url).all()
    assert [p.annotation_id for p in stored] == list(range(1, 121))
    assert {p.ranking.tiers for p in stored} == {((3,), (2,), (1,), (0,))}


def test_processes_starting_together_create_the_tables_once(database_url):
    opened: list = []
    errors = run_together(*[lambda: opened.append(PreferenceStore(database_url))] * 4,
                          *[lambda: opened.append(LoopState(database_url))] * 4)  # fmt: skip
    assert errors == [] and len(opened) == 8


def test_the_loop_state_resumes_from_what_it_saved(database_url):
    state = LoopState(database_url)
    assert state.load(1) == ("select", {})
    state.save(1, "tasks", {"selected": ["p"]})
    state.save(1, "collect", {"selected": ["p"], "task_ids": [3, 4]})  # a stage's result replaces the record
    state.save(2, "select", {})
    again = LoopState(database_url)  # a restarted controller
    assert again.load(1) == ("collect", {"selected": ["p"], "task_ids": [3, 4]})
    assert [(r["iteration"], r["stage"]) for r in again.history()] == [(1, "collect"), (2, "select")]


def test_a_database_without_a_tested_upsert_is_refused_by_name():
    with pytest.raises(InvalidRequestError, match="mysql: the store and the loop state run on"):
        PreferenceStore("mysql://user@host/rlhf")


def test_a_webhook_while_postgresql_is_down_gets_503_and_the_next_one_is_stored(tmp_path):
    from services.tools.postgres_server import PostgresServer
    from services.tools.service_process import ServiceProcess
    from tests.system.test_fuzzing import post, real_payload

    server = PostgresServer().start()  # its own: this test stops it
    backend = None
    try:
        url = server.new_database()
        backend = ServiceProcess("backend", ["--store", url, "--reward-url", "127.0.0.1:1"], tmp_path / "backend.log")
        backend.wait_ready()
        body = json.dumps(real_payload()).encode()
        server.stop("immediate")  # a crash
        assert post(f"{backend.http}/webhook", body) == 503
        assert "preference store unavailable" in backend.log()
        server.restart()
        assert post(f"{backend.http}/webhook", body) == 200  # the pool reconnects; the backend was never down
        assert [p.annotation_id for p in PreferenceStore(url).all()] == [700]
    finally:
        if backend:
            backend.stop()
        server.remove()
