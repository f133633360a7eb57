import subprocess
import sys
import textwrap
import time

import pytest

from services.models.registry import (
    InvalidVersionNameError,
    ModelRegistry,
    NothingToRollBackError,
    TrainingInProgressError,
    VersionNotFoundError,
)


def add_version(registry: ModelRegistry, payload: str = "w") -> str:
    staging = registry.staging_dir()
    (staging / "model.safetensors").write_text(payload)
    return registry.commit(staging, {"parent": "", "metrics": {"acc": 0.5}}).id


def test_versions_are_numbered_and_carry_metadata(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")
    first, second = add_version(registry), add_version(registry)
    assert (first, second) == ("reward-0001", "reward-0002")
    info = registry.get(second)
    assert info.metadata["id"] == second and info.metadata["metrics"] == {"acc": 0.5}
    assert "created_at" in info.metadata
    assert [v.id for v in registry.list()] == [first, second]


def test_promote_and_rollback_move_the_active_pointer(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")
    a, b, c = (add_version(registry) for _ in range(3))
    assert registry.promote(a) == (a, "")
    assert registry.promote(b) == (b, a)
    assert registry.promote(c) == (c, b)
    assert registry.rollback() == (b, c)
    assert registry.rollback() == (a, b)
    with pytest.raises(NothingToRollBackError):
        registry.rollback()
    assert ModelRegistry(tmp_path, "reward").active == a  # the pointer is on disk


def test_unknown_version_is_not_found(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")
    with pytest.raises(VersionNotFoundError):
        registry.promote("reward-0042")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "..", "x" * 200, "/etc", "a\x00b"])
def test_names_that_could_escape_are_refused(tmp_path, name):
    with pytest.raises(InvalidVersionNameError):
        ModelRegistry(tmp_path, "reward").get(name)


def test_kill_during_write_leaves_no_version(tmp_path):
    """A writer killed with SIGKILL mid-save leaves only staging debris, which the next open removes."""
    writer = textwrap.dedent(
        f"""
        from pathlib import Path
        from services.models.registry import ModelRegistry
        registry = ModelRegistry(Path({str(tmp_path)!r}), "reward")
        staging = registry.staging_dir()
        with open(staging / "model.safetensors", "wb") as f:
            while True:
                f.write(b"x" * 65536)
                f.flush()
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer])
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".staging-*/model.safetensors")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.2)
    process.kill()
    process.wait()
    assert list(tmp_path.glob(".staging-*"))
    registry = ModelRegistry(tmp_path, "reward")
    assert registry.list() == [] and registry.active == ""
    assert not list(tmp_path.glob(".staging-*"))


def test_ensure_base_commits_and_activates_the_base_of_an_empty_registry(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")
    base = registry.ensure_base({"base_model": "minilm"}, save=lambda staging: (staging / "w").write_text("w"))
    assert (base.id, registry.active) == ("reward-0001", "reward-0001")
    assert (base.path / "w").read_text() == "w"
    assert {k: base.metadata[k] for k in ("format", "parent", "base_model", "metrics")} == {
        "format": "base",
        "parent": "",
        "base_model": "minilm",
        "metrics": {},
    }


def test_ensure_base_keeps_existing_versions_and_activates_the_first_only_when_nothing_is(tmp_path):
    registry = ModelRegistry(tmp_path, "policy")
    first, second = add_version(registry), add_version(registry)

    def never(staging):
        raise AssertionError("a registry with versions gets no new base")

    assert registry.ensure_base({"base_model": "m"}, save=never).id == first
    assert registry.active == first and len(registry.list()) == 2
    registry.promote(second)
    assert registry.ensure_base({"base_model": "m"}, save=never).id == first
    assert registry.active == second


def test_ensure_base_that_fails_to_save_leaves_no_version(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")

    def broken(staging):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.ensure_base({}, save=broken)
    assert registry.list() == [] and registry.active == ""
    assert not list(tmp_path.glob(".staging-*"))


def test_format_reads_the_kind_key_of_reward_registries_written_before_format(tmp_path):
    registry = ModelRegistry(tmp_path, "reward")
    old = registry.commit(registry.staging_dir(), {"kind": "base", "parent": "", "metrics": {}})
    new = registry.ensure_base({})
    assert (old.format, new.format, new.id) == ("base", "base", old.id)
    assert registry.active == old.id


def hold_in_child(tmp_path, body: str) -> subprocess.Popen:
    """A child process that opens the registry, runs `body` (which prints once it holds what it takes), and
    waits for its stdin to close."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from services.models.registry import ModelRegistry
        registry = ModelRegistry(Path({str(tmp_path)!r}), "reward")
        """
    ) + textwrap.dedent(body)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_another_process_opening_the_registry_keeps_a_live_writers_staging(tmp_path):
    """A replica starting beside one that trains must not delete the version being written."""
    writer = hold_in_child(
        tmp_path,
        """
        staging = registry.staging_dir()
        (staging / "model.safetensors").write_text("half")
        print("ready", flush=True)
        sys.stdin.read()
        registry.commit(staging, {"parent": "", "metrics": {}})
        """,
    )
    ModelRegistry(tmp_path, "reward")  # a second process opens it while the first writes
    assert len(list(tmp_path.glob(".staging-*/model.safetensors"))) == 1
    writer.stdin.close()
    assert writer.wait(30) == 0
    (version,) = ModelRegistry(tmp_path, "reward").list()
    assert (version.path / "model.safetensors").read_text() == "half"
    assert not (version.path / ".writing").exists()


def test_one_training_run_per_registry_across_processes(tmp_path):
    holder = hold_in_child(
        tmp_path,
        """
        with registry.exclusive_training("replica-a"):
            print("ready", flush=True)
            sys.stdin.read()
        """,
    )
    registry = ModelRegistry(tmp_path, "reward")
    with pytest.raises(TrainingInProgressError, match="in progress on replica-a"), registry.exclusive_training("b"):
        pass
    holder.stdin.close()
    assert holder.wait(30) == 0
    # One run per registry in one process too (flock is per open file, not per process).
    with (
        registry.exclusive_training("replica-b"),
        pytest.raises(TrainingInProgressError, match="replica-b"),
        registry.exclusive_training("replica-c"),
    ):
        pass
