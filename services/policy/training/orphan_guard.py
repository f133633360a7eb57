"""Run a module as `__main__` in a process that dies with the process that started it.

    python -m services.policy.training.orphan_guard PARENT_PID MODULE [ARGS...]

The policy service starts its training worker (or accelerate's launcher)
through this, so a killed service never leaves training running unobserved.
Linux PR_SET_PDEATHSIG does it; it is set here, after exec, rather than in a
preexec_fn, which is unsafe to run in a forked copy of a threaded server.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent exits; exit now if the parent is already gone."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def main() -> None:
    parent_pid, module = int(sys.argv[1]), sys.argv[2]
    die_with_parent(parent_pid)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
