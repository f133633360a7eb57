"""Reward replicas on one shared registry: each one announces the version it serves.

Every replica writes `replicas/<id>.json` beside the registry's versions every
`follow_interval_s` (the version it serves, and when it said so). A Promote
waits until every live replica announces the new version, so once it returns
no live replica serves the old one. A replica that has not announced for
`stale_after_s` is dead or stuck; it is not waited for, and when it comes back
it loads the active version before it reports SERVING.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from services.models.registry import write_json_atomically

REPLICAS_DIR = "replicas"
FORGET_AFTER_S = 3600.0  # announcements this old are removed (pods come and go under new names)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_replica_id() -> str:
    """`<hostname>-<pid>`: a pod's name in Kubernetes, and distinct for processes that share a host."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ReplicaStatus:
    id: str
    version: str
    announced_at: float  # time.time() on the replica's host


class ReplicaBoard:
    """The replicas' announcements under `registry_root/replicas`."""

    def __init__(self, registry_root: Path, replica_id: str, stale_after_s: float):
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be > 0")
        self.dir = Path(registry_root) / REPLICAS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.replica_id = _UNSAFE.sub("_", replica_id)[:128] or "replica"
        self.stale_after_s = stale_after_s

    @property
    def _own_file(self) -> Path:
        return self.dir / f"{self.replica_id}.json"

    def announce(self, version: str) -> None:
        """Say which version this replica serves now (not fsynced: an announcement lost in a crash is stale anyway)."""
        record = {"id": self.replica_id, "version": version, "announced_at": time.time()}
        write_json_atomically(self._own_file, record, durable=False)

    def live(self) -> list[ReplicaStatus]:
        """The replicas that announced within `stale_after_s`, this one included once it has announced."""
        now, statuses = time.time(), []
        for path in self.dir.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                status = ReplicaStatus(record["id"], record["version"], float(record["announced_at"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed or replaced while being read
            age = now - status.announced_at
            if age <= self.stale_after_s:
                statuses.append(status)
            elif age > FORGET_AFTER_S:
                path.unlink(missing_ok=True)
        return sorted(statuses, key=lambda s: s.id)

    def leave(self) -> None:
        """A replica that stops cleanly is not waited for until it goes stale."""
        self._own_file.unlink(missing_ok=True)
