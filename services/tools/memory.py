"""Resident memory of child processes, read once or sampled in a thread while a benchmark runs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    # A process that has exited but not been reaped keeps its status file, without the memory fields.
    raise ProcessLookupError(f"{field} not available for process {pid}")


def rss_bytes(pid: int) -> int:
    """The process's resident set size now (Linux VmRSS)."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (Linux VmHWM)."""
    return _status_kb(pid, "VmHWM") * 1024


def tree_rss_bytes(pid: int) -> int:
    """The summed resident set size of a process and all its descendants (e.g. a training worker)."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


class RssSampler:
    """Reads each named memory figure every `interval_s` in a thread, from entering the block to leaving it."""

    def __init__(self, readers: dict[str, Callable[[], int]], interval_s: float):
        self.readers, self.interval_s = readers, interval_s
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in readers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for name, read in self.readers.items():
                # A process that is gone or exiting mid-sample skips that sample; the others still count.
                with contextlib.suppress(OSError, psutil.Error):
                    self.samples[name].append((time.monotonic(), read()))

    def __enter__(self) -> RssSampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, name: str) -> int:
        """The largest sample of one figure (0 before the first sample)."""
        return max((rss for _, rss in self.samples[name]), default=0)
