"""A directory of immutable model versions with an "active" pointer.

A version is written into a staging directory inside the registry and renamed
into `versions/` only once complete (metadata.json last), so a crash mid-write
never leaves a half version: staging leftovers are removed on the next open.
The active pointer and its history live in state.json, replaced atomically.

Several processes may share one registry (reward replicas on a shared volume,
the nodes of a distributed training run): numbering, the pointer and the base
are changed under an flock(2) on `.registry.lock`, and the writer of a staging
directory holds an flock on its `.writing` file, so a replica that opens the
registry later removes only the leftovers of writers that died.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.core.errors import InvalidRequestError, NotFoundError, PreconditionError

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
STATE_FILE = "state.json"
STAGING_PREFIX = ".staging-"
LOCK_FILE = ".registry.lock"
WRITER_LOCK = ".writing"  # inside a staging directory, flocked by the process writing it
TRAINING_LOCK = ".training.lock"
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VersionNotFoundError(NotFoundError):
    """No version of that name exists in the registry."""


class InvalidVersionNameError(InvalidRequestError):
    """The name could address something outside the registry's versions directory."""


class NothingToRollBackError(PreconditionError):
    """The active version has no predecessor to return to."""


class TrainingInProgressError(PreconditionError):
    """Another run (in this process or another one on the same registry) holds the training lock."""


@dataclass(frozen=True)
class VersionInfo:
    id: str
    path: Path
    metadata: dict[str, Any]

    @property
    def parent(self) -> str:
        return self.metadata.get("parent") or ""

    @property
    def format(self) -> str:
        """What the version holds ("base", "lora", "full", ...); reward registries written before said `kind`."""
        return self.metadata.get("format") or self.metadata.get("kind") or ""


def write_json_atomically(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON to a temp file beside `path`, then rename over it; `durable` fsyncs both first."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelRegistry:
    """Versions named `<prefix>-0001`, `<prefix>-0002`, ... under `root/versions`."""

    def __init__(self, root: Path, prefix: str):
        self.root = Path(root)
        self.prefix = prefix
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._lock_file: int | None = None  # the flocked .registry.lock while this process holds it
        self._lock_depth = 0
        self._writers: dict[Path, int] = {}  # staging directory -> its flocked .writing file
        with self._locked():
            self._remove_abandoned_staging()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: this process's threads (the RLock) and other processes (the flock)."""
        with self._lock:
            # flock is per open file: a nested open+flock in this process would wait on itself.
            if self._lock_depth == 0:
                self._lock_file = os.open(self.root / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    os.close(self._lock_file)
                    self._lock_file = None

    def _remove_abandoned_staging(self) -> None:
        """Remove staging directories whose writer is gone (its flock was released when it died)."""
        for leftover in self.root.glob(f"{STAGING_PREFIX}*"):
            try:
                fd = os.open(leftover / WRITER_LOCK, os.O_RDWR)
            except FileNotFoundError:
                fd = None  # written before writers held a lock, or never locked: nobody writes it
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is still writing this version
            finally:
                if fd is not None:
                    os.close(fd)
            shutil.rmtree(leftover, ignore_errors=True)

    # -- reading -------------------------------------------------------------
    def path_of(self, version_id: str) -> Path:
        """The directory of a version name, refusing names that could escape the registry."""
        if not _VERSION_NAME.match(version_id) or ".." in version_id:
            raise InvalidVersionNameError(
                f"invalid version name {version_id!r}: use letters, digits, '.', '_' and '-' (max 128)"
            )
        path = (self.versions_dir / version_id).resolve()
        if path.parent != self.versions_dir.resolve():
            raise InvalidVersionNameError(f"version name {version_id!r} escapes the registry")
        return path

    def get(self, version_id: str) -> VersionInfo:
        path = self.path_of(version_id)
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise VersionNotFoundError(f"no version {version_id!r} in {self.root}")
        return VersionInfo(version_id, path, json.loads(metadata_path.read_text()))

    def list(self) -> list[VersionInfo]:
        names = sorted(p.name for p in self.versions_dir.iterdir() if (p / METADATA_FILE).is_file())
        return [self.get(name) for name in names]

    def _state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        return json.loads(path.read_text()) if path.is_file() else {"active": "", "history": []}

    @property
    def active(self) -> str:
        return self._state()["active"]

    # -- writing -------------------------------------------------------------
    def staging_dir(self) -> Path:
        """A fresh directory on the registry's filesystem to save a new version into; `commit` or `discard` it."""
        with self._locked():  # created and locked in one step, so no other process sees it unlocked
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))
            fd = os.open(staging / WRITER_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._writers[staging] = fd
        return staging

    def discard(self, staging: Path) -> None:
        """Remove a staging directory that will not become a version."""
        shutil.rmtree(staging, ignore_errors=True)
        self._release_writer(staging)

    def _release_writer(self, staging: Path) -> None:
        fd = self._writers.pop(staging, None)
        if fd is not None:
            os.close(fd)

    def commit(self, staging: Path, metadata: dict[str, Any]) -> VersionInfo:
        """Seal a fully written staging directory as the next version; returns it."""
        with self._locked():
            numbers = [
                int(p.name.rsplit("-", 1)[1])
                for p in self.versions_dir.iterdir()
                if p.name.startswith(f"{self.prefix}-") and p.name.rsplit("-", 1)[1].isdigit()
            ]
            version_id = f"{self.prefix}-{max(numbers, default=0) + 1:04d}"
            metadata = {
                **metadata,
                "id": version_id,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (staging / WRITER_LOCK).unlink(missing_ok=True)  # the open file keeps the lock until the rename
            write_json_atomically(staging / METADATA_FILE, metadata)
            os.rename(staging, self.versions_dir / version_id)
            _fsync_dir(self.versions_dir)
            self._release_writer(staging)
        return self.get(version_id)

    def ensure_base(self, metadata: dict[str, Any], save: Callable[[Path], None] | None = None) -> VersionInfo:
        """The first version; an empty registry gets one (`save` fills its directory) and nothing active gets it."""
        with self._locked():  # replicas starting together on an empty registry make one base, not one each
            versions = self.list()
            if versions:
                base = versions[0]
            else:
                staging = self.staging_dir()
                try:
                    if save is not None:
                        save(staging)
                except BaseException:
                    self.discard(staging)
                    raise
                base = self.commit(staging, {"format": "base", "parent": "", "metrics": {}, **metadata})
                log.info(
                    "registered base version", extra={"version": base.id, "base_model": metadata.get("base_model")}
                )
            if not versions or not self.active:
                self.promote(base.id)
        return base

    def promote(self, version_id: str) -> tuple[str, str]:
        """Make `version_id` active; returns (active, previous)."""
        self.get(version_id)
        with self._locked():
            state = self._state()
            previous = state["active"]
            if previous and previous != version_id:
                state["history"].append(previous)
            state["active"] = version_id
            write_json_atomically(self.root / STATE_FILE, state)
        return version_id, previous

    def rollback(self) -> tuple[str, str]:
        """Return to the version active before the current one; returns (active, previous)."""
        with self._locked():
            state = self._state()
            if not state["history"]:
                raise NothingToRollBackError(f"version {state['active'] or '(none)'} has no predecessor")
            previous = state["active"]
            state["active"] = state["history"].pop()
            write_json_atomically(self.root / STATE_FILE, state)
        return state["active"], previous

    @contextlib.contextmanager
    def exclusive_training(self, owner: str) -> Iterator[None]:
        """Held for a whole training run: one run per registry, whichever process or replica asks."""
        fd = os.open(self.root / TRAINING_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = (self.root / TRAINING_LOCK).read_text().strip() or "another process"
                raise TrainingInProgressError(
                    f"a training run is already in progress on {holder}; wait for it or cancel it"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, owner.encode())
            yield
        finally:
            os.close(fd)
