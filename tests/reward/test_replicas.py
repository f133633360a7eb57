"""Three reward replicas (real processes) on one registry, reached through one round_robin target.

16 clients keep scoring while a replica is SIGKILLed and restarted, and while
the active version changes: no request fails, every response names one
version, and a request sent after Promote (or Rollback) returned is answered by
the new version, whichever replica it reached.
"""

import threading
import time
import urllib.request
from dataclasses import dataclass

import grpc
import pytest

from services.models.registry import ModelRegistry
from services.reward.client import RewardClient
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess

pytestmark = pytest.mark.integration

REPLICAS = 3
CLIENTS = 16
TRAIN = {"epochs": 10, "learning_rate": 1e-3, "batch_size": 16, "seed": 1}


def start_replica(n: int, root, model_dir, port: int | None = None) -> ServiceProcess:
    args = [
        "--registry", str(root / "registry"), "--model", str(model_dir), "--replica-id", f"replica-{n}",
        "--follow-interval", "0.2", "--replica-stale-after", "2", "--threads", "1",
    ]  # fmt: skip
    return ServiceProcess("reward", args, root / f"replica-{n}.log", port=port)


@pytest.fixture
def replicas(tiny_model_dir, tmp_path):
    # Started together on an empty registry: they must agree on one base version.
    started = [start_replica(n, tmp_path, tiny_model_dir) for n in range(REPLICAS)]
    try:
        for process in started:
            process.wait_ready()
        yield started
    finally:
        for process in started:
            process.stop()


@dataclass(frozen=True)
class Answer:
    sent: float
    version: str


def metric(process: ServiceProcess, name: str) -> float:
    with urllib.request.urlopen(f"{process.http}/metrics", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.split("{")[0].split()[0] == name)


def serving_versions(processes: list[ServiceProcess]) -> dict[str, tuple[str, str]]:
    """Each replica's (serving version, active version), asked of it directly."""
    found = {}
    for process in processes:
        with RewardClient(process.target) as direct:
            info = direct.info()
            found[info.replica_id] = (info.serving_version, info.active_version)
    return found


def test_replicas_agree_on_one_base_and_train_one_at_a_time(replicas, tmp_path):
    assert [v.id for v in ModelRegistry(tmp_path / "registry", "reward").list()] == ["reward-0001"]
    with RewardClient(replicas[0].target, timeout_s=120) as first, RewardClient(replicas[1].target) as second:
        stream = first.train(synthetic_rankings(60, 4, seed=1), **TRAIN)
        assert next(stream).WhichOneof("event") == "progress"
        # The lock is the registry's, so another replica refuses while the first one trains.
        with pytest.raises(grpc.RpcError) as refused:
            list(second.train(synthetic_rankings(20, 4, seed=2), **TRAIN))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "replica-0" in refused.value.details()
        version = list(stream)[-1].version.id
    assert version == "reward-0002"
    # A version trained on one replica is there for all: Score can name it on another.
    with RewardClient(replicas[2].target) as third:
        assert third.score([("Hi", "Happy to help!")], version=version)[1] == version


def test_16_clients_lose_nothing_while_a_replica_dies_and_the_version_changes(replicas, tiny_model_dir, tmp_path):
    target = "ipv4:" + ",".join(process.target for process in replicas)
    with RewardClient(replicas[0].target, timeout_s=120) as trainer:
        new = list(trainer.train(synthetic_rankings(60, 4, seed=1), **TRAIN))[-1].version.id
    old = "reward-0001"
    answers: list[Answer] = []
    errors: list[grpc.RpcError] = []
    stop = threading.Event()

    def keep_scoring(n: int) -> None:
        with RewardClient(target, timeout_s=30, retries=6, backoff_s=0.1) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    _, version = client.score([(f"client {n}", "Happy to help!")])
                    answers.append(Answer(sent, version))
                except grpc.RpcError as error:
                    errors.append(error)

    threads = [threading.Thread(target=keep_scoring, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        victim = replicas[2]
        victim.process.kill()  # SIGKILL: no goodbye, its announcement just goes stale
        victim.process.wait()
        time.sleep(0.5)
        with RewardClient(target, timeout_s=60) as admin:
            assert admin.promote(new).active == new  # waits out the dead replica's staleness, not forever
            promoted = time.monotonic()
            # Restarted after the Promote, on its old port: it must come up on the active version.
            replicas[2] = start_replica(2, tmp_path, tiny_model_dir, port=victim.port)
            victim.stop()
            replicas[2].wait_ready()
            assert serving_versions([replicas[2]]) == {"replica-2": (new, new)}
            time.sleep(1.5)
            rollback_sent = time.monotonic()
            assert admin.rollback().active == old  # all three live: each follows before it returns
            rolled_back = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert {a.version for a in answers} == {old, new}
    after_promote = [a.version for a in answers if promoted < a.sent < rollback_sent]
    after_rollback = [a.version for a in answers if a.sent > rolled_back]
    assert len(after_promote) > 50 and set(after_promote) == {new}
    assert len(after_rollback) > 50 and set(after_rollback) == {old}
    assert serving_versions(replicas) == {f"replica-{n}": (old, old) for n in range(REPLICAS)}
    # round_robin spread the calls: every replica scored some (the restarted one counts since its restart).
    assert all(metric(process, "rlhf_reward_items_scored_total") > 0 for process in replicas[:2])
    assert [metric(p, "rlhf_reward_replicas") for p in replicas] == [REPLICAS] * REPLICAS
    assert [metric(p, "rlhf_reward_replicas_behind") for p in replicas] == [0] * REPLICAS
    # The rollback reached one replica (round_robin picks which); the other two took it up from the registry.
    followed = '"action": "follow", "version": "reward-0001"'
    assert sum(followed in process.log() for process in replicas) == REPLICAS - 1
