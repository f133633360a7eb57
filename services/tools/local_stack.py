"""The local stack: reward service, policy service, backend and Label Studio as child processes on free ports.

Each part gets its port the first time it is asked for (`port(part)`) and
keeps it, so a part restarted after a kill comes back where its callers
expect it, and a config can name the ports before the parts start. Files go
under `root`: `<role>-registry/` and `<role>.log` per service,
`label-studio/` for Label Studio. Leaving the block stops the parts in the
reverse order of their first start.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from labelstudio_backend import labelstudio_server
from services.core.stop_signals import restore_signal_mask, unblock_stop_signals
from services.tools.service_process import ServiceProcess, free_port

LABELSTUDIO = "labelstudio"


class LocalStack:
    """Starts the parts asked for, each ready before the call returns; `close()` stops them all."""

    def __init__(self, root: Path, progress: Callable[[str], None] = print):
        self.root = Path(root)
        self.progress = progress
        self.labelstudio_dir = self.root / "label-studio"
        self.ports: dict[str, int] = {}
        self.processes: dict[str, ServiceProcess] = {}
        self._started: list[str] = []  # first-start order, which close() reverses
        self._previous_sigterm: signal.Handlers | Callable | int | None = None
        self._previous_mask: set[signal.Signals] | None = None

    def port(self, part: str) -> int:
        """The part's port, chosen the first time it is asked for."""
        if part not in self.ports:
            self.ports[part] = free_port()
        return self.ports[part]

    def target(self, part: str) -> str:
        """host:port of a gRPC service, known before it starts."""
        return f"127.0.0.1:{self.port(part)}"

    def registry(self, role: str) -> Path:
        """The service's model registry folder."""
        return self.root / f"{role}-registry"

    def log(self, role: str) -> Path:
        """The service's log file (its stdout and stderr)."""
        return self.root / f"{role}.log"

    def labelstudio(self) -> labelstudio_server.Credentials:
        """Label Studio on its port, with its data under root/label-studio."""
        self._remember(LABELSTUDIO)  # before up(): a half-started one is stopped too
        return labelstudio_server.up(self.port(LABELSTUDIO), self.labelstudio_dir, progress=self.progress)

    def reward(self, model: str, *extra: str, timeout_s: float = 120.0) -> ServiceProcess:
        """The reward service on `model` (a name or a path)."""
        return self._serve("reward", ["--registry", str(self.registry("reward")), "--model", model, *extra], timeout_s)

    def policy(self, model: str, *extra: str, timeout_s: float = 120.0) -> ServiceProcess:
        """The policy service on `model`, scoring with this stack's reward service."""
        args = ["--registry", str(self.registry("policy")), "--model", model, "--reward-url", self.target("reward")]
        return self._serve("policy", [*args, *extra], timeout_s)

    def backend(self, store_url: str, timeout_s: float = 120.0) -> ServiceProcess:
        """The Label Studio ML backend on the preference store, ranking with this stack's reward service."""
        return self._serve("backend", ["--store", store_url, "--reward-url", self.target("reward")], timeout_s)

    def _serve(self, role: str, args: list[str], timeout_s: float) -> ServiceProcess:
        process = ServiceProcess(role, args, self.log(role), port=self.port(role))
        self.processes[role] = process
        self._remember(role)  # before wait_ready(): one that never gets ready is stopped too
        process.wait_ready(timeout_s)
        return process

    def _remember(self, part: str) -> None:
        if part not in self._started:
            self._started.append(part)

    def close(self) -> None:
        """Stop every part started, the last started first."""
        for part in reversed(self._started):
            if part == LABELSTUDIO:
                labelstudio_server.down(self.labelstudio_dir)
            else:
                self.processes[part].stop()
        self._started.clear()

    def __enter__(self) -> LocalStack:
        if threading.current_thread() is threading.main_thread():
            # Python dies of SIGTERM (`kill`, a CI timeout) without running `finally`: the parts
            # would outlive the run. As SystemExit, the signal unwinds through close().
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self._previous_mask = unblock_stop_signals()  # the parts inherit the mask too
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
            if self._previous_mask is not None:
                restore_signal_mask(self._previous_mask)
                self._previous_mask = None


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)
