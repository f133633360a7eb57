"""The local stack stops what it started, also when the run is killed with SIGTERM (`kill`, a CI timeout)."""

import os
import signal
import subprocess
import sys
import time

RUN = """
import sys, time
from pathlib import Path
from services.tools.local_stack import LocalStack
with LocalStack(Path(sys.argv[1]), progress=lambda _: None) as stack:
    print(stack.reward(sys.argv[2]).process.pid, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_run_stops_the_services_it_started(tmp_path, tiny_model_dir):
    run = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), str(tiny_model_dir)], stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
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
    finally:
        run.kill()
