"""Every role runs from the image the Dockerfile builds (`make image`), called from the host, as a deployment does.

Host networking keeps every address on 127.0.0.1; the models and data are
bind mounts, as a deployment's volumes are. The store and the loop state are
in a real PostgreSQL server on the host.
"""

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from labelstudio_backend.preference_store import PreferenceStore
from services.controller.loop_state import LoopState
from services.policy.client import PolicyClient
from services.reward.client import RewardClient
from services.rpc.client import GrpcClient
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.container_image import IMAGE, build_image, podman
from services.tools.service_process import free_port
from tests.system.test_fuzzing import post, real_payload

pytestmark = pytest.mark.integration

USER = 10001  # the image's user (Dockerfile: useradd --uid 10001)


class Container:
    """One `podman run -d` of the image on the host network; stopped (and removed) by stop()."""

    def __init__(self, name: str, args: list[str], volumes: dict[Path, str]):
        self.name = f"rlhf-test-{name}-{free_port()}"
        mounts = [flag for host, inside in volumes.items() for flag in ("-v", f"{host}:{inside}")]
        podman("run", "-d", "--name", self.name, "--network", "host", *mounts, IMAGE, *args)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def stop(self) -> int:
        podman("stop", "--time", "30", self.name, check=False)
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        podman("rm", "--force", self.name, check=False)
        return code


def serve(name: str, role: str, port: int, metrics_port: int | None, args: list[str], volumes) -> Container:
    ports = ["--port", str(port)] + (["--metrics-port", str(metrics_port)] if metrics_port else [])
    return Container(name, ["serve", role, *ports, *args], volumes)


def wait_serving(container: Container, target: str) -> None:
    try:
        with GrpcClient(target) as client:
            client.wait_ready(timeout_s=300)  # on vfs storage, a container first copies all of the image
    except TimeoutError:
        pytest.fail(f"{container.name} never served; its log:\n{container.logs()}")


def world_readable_copy(source: Path, target: Path) -> Path:
    """A copy a container's user can read: pytest's own folders are 0700."""
    shutil.copytree(source, target)
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    return target


def writable_by_the_image_user(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, USER, USER)
    return path


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built from this checkout, or found holding it already (its source-digest label)."""
    return build_image(progress=print)["image"]


@pytest.fixture(scope="module")
def mounts(image, tiny_model_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("image-roles")
    root.chmod(0o755)
    models = root / "models"
    models.mkdir(mode=0o755)
    world_readable_copy(tiny_model_dir, models / "tiny")
    return {"models": {models: "/models:ro"}, "data": writable_by_the_image_user(root / "data"), "root": root}


@pytest.fixture(scope="module")
def reward(mounts):
    port = free_port()
    container = serve("reward", "reward", port, free_port(),
                      ["--registry", "/data/reward", "--model", "/models/tiny"],
                      {**mounts["models"], mounts["data"]: "/data"})  # fmt: skip
    wait_serving(container, f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}"
    assert container.stop() == 0, container.logs()  # SIGTERM: a graceful stop


def test_the_image_runs_as_its_own_non_root_user(image):
    done = podman("run", "--rm", "--entrypoint", "id", image)
    assert done.stdout.startswith(f"uid={USER}(rlhf) gid={USER}(rlhf)"), done.stdout


def test_the_reward_role_serves_scores_to_the_host(reward):
    with RewardClient(reward, timeout_s=60) as client:
        scores, version = client.score([("Hi", "Thanks, glad to help!"), ("Hi", "Go away.")])
        assert version == "reward-0001"
        assert len(scores) == 2 and scores[0] != scores[1]


def test_the_policy_role_generates_and_trains_with_two_processes(mounts, reward):
    port = free_port()
    container = serve("policy", "policy", port, free_port(),
                      ["--registry", "/data/policy", "--model", "/models/tiny", "--reward-url", reward,
                       "--train-processes", "2"],
                      {**mounts["models"], mounts["data"]: "/data"})  # fmt: skip
    try:
        wait_serving(container, f"127.0.0.1:{port}")
        with PolicyClient(f"127.0.0.1:{port}", timeout_s=600) as client:
            generated = client.generate(["Hi"], n=2, max_new_tokens=4)
            assert len(generated.results[0].completions) == 2
            events = list(client.train(rankings=synthetic_rankings(8, 3), method="dpo", prompts_per_step=2, seed=1))
            assert json.loads(events[-1].version.metadata_json)["metrics"]["processes"] == 2, container.logs()
            assert [v.id for v in client.list_versions().versions] == ["policy-0001", "policy-0002"]
    finally:
        assert container.stop() == 0, container.logs()


def test_the_backend_role_stores_a_webhook_in_postgresql(mounts, reward, postgres):
    store_url = postgres.new_database()
    port = free_port()
    container = serve("backend", "backend", port, None, ["--store", store_url, "--reward-url", reward], {})
    try:
        url = f"http://127.0.0.1:{port}"
        health = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    health = reply.status
                    break
            except OSError:
                time.sleep(1)
        assert health == 200, container.logs()
        assert post(f"{url}/webhook", json.dumps(real_payload()).encode()) == 200
        stored = PreferenceStore(store_url).all()
        assert [(p.annotation_id, p.ranking.tiers) for p in stored] == [(700, ((2,), (0,), (1,)))]
    finally:
        assert container.stop() == 0, container.logs()


def test_the_controller_role_reads_the_shared_loop_state(mounts, postgres):
    state_url = postgres.new_database()
    LoopState(state_url).save(1, "collect", {"task_ids": [3, 4]})
    config = mounts["root"] / "config"
    config.mkdir()
    (config / "loop.toml").write_text(f'state_url = "{state_url}"\n')
    done = podman("run", "--rm", "--network", "host", "-v", f"{config}:/config:ro", IMAGE,
                  "loop", "status", "--config", "/config/loop.toml")  # fmt: skip
    assert [(r["iteration"], r["stage"], r["task_ids"]) for r in json.loads(done.stdout)] == [(1, "collect", [3, 4])]
