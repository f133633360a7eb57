"""A real reward service (`rlhf-loop serve reward` on the tiny model, free ports) per test module, and its client."""

import pytest

from services.reward.client import RewardClient
from services.tools.service_process import ServiceProcess


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    process = ServiceProcess(
        "reward",
        [
            "--registry",
            str(root / "registry"),
            "--model",
            str(tiny_model_dir),
            "--max-queue",
            "64",
            "--max-text-chars",
            "2000",
        ],
        root / "reward.log",
    )
    process.wait_ready()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.target, timeout_s=60) as c:
        yield c
