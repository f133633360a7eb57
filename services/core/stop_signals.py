"""Make sure SIGTERM and SIGINT reach this process's handlers.

A blocked signal stays pending forever, and the signal mask is inherited
across fork and exec: a parent that runs us with SIGTERM blocked (some CI
runners and process supervisors do) would leave every graceful-shutdown
handler dead, and `kill` would do nothing. Python's `signal.signal` and
asyncio's `add_signal_handler` install handlers but never touch the mask.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def unblock_stop_signals() -> set[signal.Signals]:
    """Unblock SIGTERM and SIGINT in the calling thread; returns the mask before, for `restore_signal_mask`."""
    return signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def restore_signal_mask(mask: set[signal.Signals]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
