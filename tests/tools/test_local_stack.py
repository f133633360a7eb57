"""The local stack stops what it started, also when the run is killed with SIGTERM (`kill`, a CI timeout)."""

import os
import signal
import subprocess
import sys
import time

import pytest

RUN = """
import sys, time
from pathlib import Path
from services.tools.local_stack import LocalStack
with LocalStack(Path(sys.argv[1]), progress=lambda _: None) as stack:
    print(stack.reward(sys.argv[2]).process.pid, flush=True)
    # Short sleeps, as a working run's main thread makes: the kernel may hand SIGTERM to one of
    # gRPC's threads, and Python runs the handler only when the main thread next wakes.
    for _ in range(6000):
        time.sleep(0.1)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


# Some CI runners start their jobs with SIGTERM blocked, and the mask is inherited across exec.
@pytest.mark.parametrize("parent_blocks_sigterm", [False, True])
def test_sigterm_to_the_run_stops_the_services_it_started(tmp_path, tiny_model_dir, parent_blocks_sigterm):
    run = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), str(tiny_model_dir)], stdout=subprocess.PIPE,
                           text=True, preexec_fn=block_sigterm if parent_blocks_sigterm else None)  # fmt: skip
    try:
        reward_pid = int(run.stdout.readline())  # printed once the reward service is ready
        assert alive(reward_pid)
        run.send_signal(signal.SIGTERM)
        # 3 s on idle cores; the bound covers a stop that waits out the service's 30 s grace under load.
        assert run.wait(timeout=150) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while alive(reward_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(reward_pid)
        assert '"stopped"' in (tmp_path / "reward.log").read_text()  # it shut down gracefully, not killed
    finally:
        run.kill()
