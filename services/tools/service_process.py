"""Run `rlhf-loop serve <role>` as a child process on free ports (benchmarks, the demo, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from services.rpc.client import GrpcClient
from services.tools.memory import peak_rss_bytes, rss_bytes


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it; nothing holds it until a process binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """`rlhf-loop serve <role> ...` as a child process, stopped with SIGTERM."""

    def __init__(
        self,
        role: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        cwd: Path | None = None,
    ):
        self.role = role
        self.port = port or free_port()
        # gRPC services also serve HTTP (/metrics) on a second port; the backend is HTTP only.
        self.metrics_port = free_port() if role != "backend" else self.port
        self.log_path = log_path
        ports = ["--port", str(self.port)]
        if role != "backend":
            ports += ["--metrics-port", str(self.metrics_port)]
        command = [sys.executable, "-m", "services.cli", "serve", role, *ports, *args]
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        if self.role == "backend":
            return self._wait_http(timeout_s)
        client = GrpcClient(self.target)
        deadline = time.monotonic() + timeout_s
        try:
            while self.process.poll() is None:
                try:
                    client.wait_ready(timeout_s=1)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        break
        finally:
            client.close()
        raise RuntimeError(f"{self.role} service did not become ready; log:\n{self.log()}")

    def _wait_http(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.http}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.role} did not become ready; log:\n{self.log()}")

    def peak_rss_bytes(self) -> int:
        """The process's peak resident set size so far."""
        return peak_rss_bytes(self.process.pid)

    def rss_bytes(self) -> int:
        """The process's resident set size now."""
        return rss_bytes(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
