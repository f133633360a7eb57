"""The deploy README's backup and restore, run as written: a live stack's registry and database into an empty one."""

import subprocess

import pytest
from sqlalchemy.engine import make_url

from labelstudio_backend.preference_store import PreferenceStore
from services.controller.loop_state import LoopState
from services.reward.client import RewardClient
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.postgres_server import BIN
from services.tools.service_process import ServiceProcess
from tests.labelstudio_backend.test_store_databases import preference

pytestmark = pytest.mark.integration


def libpq(url: str) -> str:
    """The URL as pg_dump and pg_restore take it (no SQLAlchemy driver name)."""
    u = make_url(url)
    return f"postgresql://{u.username}@{u.host}:{u.port}/{u.database}"


def test_a_backup_restored_into_an_empty_stack_serves_the_same_active_version(tiny_model_dir, postgres, tmp_path):
    database, registry = postgres.new_database(), tmp_path / "reward-registry"
    store, state = PreferenceStore(database), LoopState(database)
    for i in range(1, 4):
        store.upsert(preference(i, ["c1", "c0", "c2", "c3"]))
    state.save(1, "done", {"reward_version": "reward-0002"})
    service = ServiceProcess("reward", ["--registry", str(registry), "--model", str(tiny_model_dir)],
                             tmp_path / "reward.log")  # fmt: skip
    try:
        service.wait_ready()
        with RewardClient(service.target, timeout_s=300) as client:
            list(client.train(synthetic_rankings(12, 3), epochs=1, batch_size=8, seed=1, promote=True))
            assert client.info().active_version == "reward-0002"
        # The backup, as deploy/README.md gives it, taken while the service runs.
        backup = tmp_path / "backup"
        backup.mkdir()
        subprocess.run(["tar", "-C", str(registry), "--exclude=.staging-*", "-cf", str(backup / "reward-registry.tar"),
                        "state.json", "versions"], check=True)  # fmt: skip
        subprocess.run([str(BIN / "pg_dump"), "--format=custom", "--file", str(backup / "rlhf.dump"), libpq(database)],
                       check=True)  # fmt: skip
    finally:
        service.stop()

    # The restore, into an empty registry folder and an empty database.
    restored_registry, restored_database = tmp_path / "restored-registry", postgres.new_database()
    restored_registry.mkdir()
    subprocess.run(["tar", "-C", str(restored_registry), "-xf", str(backup / "reward-registry.tar")], check=True)
    subprocess.run([str(BIN / "pg_restore"), "--no-owner", "--dbname", libpq(restored_database),
                    str(backup / "rlhf.dump")], check=True)  # fmt: skip
    restored = ServiceProcess("reward", ["--registry", str(restored_registry), "--model", str(tiny_model_dir)],
                              tmp_path / "restored.log")  # fmt: skip
    try:
        restored.wait_ready()
        with RewardClient(restored.target, timeout_s=60) as client:
            assert client.info().active_version == "reward-0002"
            assert [v.id for v in client.list_versions().versions] == ["reward-0001", "reward-0002"]
            assert client.score([("Hi", "Thanks!")])[1] == "reward-0002"
    finally:
        restored.stop()
    assert [(p.annotation_id, p.ranking.tiers) for p in PreferenceStore(restored_database).all()] == [
        (p.annotation_id, p.ranking.tiers) for p in store.all()
    ]
    assert LoopState(restored_database).history() == state.history()
