"""The compose stack up with podman-compose (this machine's override), one loop iteration through its containers.

Label Studio, the reward and policy services, the backend and the controller
run as the compose file's containers, from the images `make image` builds; the
database and Prometheus are host processes, as the override says. The
controller's simulated annotators rank in Label Studio, whose webhooks reach the
backend's container, which stores them in PostgreSQL.
"""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.preference_store import PreferenceStore
from services.controller.loop_config import toml_text
from services.controller.loop_state import LoopState
from services.tools.container_image import build_image, build_labelstudio_image, container_env, podman
from services.tools.service_process import free_port
from tests.deploy.test_image import world_readable_copy
from tests.fixtures.prometheus_server import all_up, prometheus_scraping, wait_for

pytestmark = pytest.mark.integration

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
SERVICES = ("labelstudio", "reward", "policy", "backend")
TITLE = "compose-loop"
# The override's port variables (each part's own loopback port), and the controller's metrics port.
PORTS = ("LABEL_STUDIO_PORT", "REWARD_PORT", "REWARD_METRICS_PORT", "POLICY_PORT", "POLICY_METRICS_PORT",
         "BACKEND_PORT", "CONTROLLER_METRICS_PORT")  # fmt: skip


class Compose:
    """podman-compose on the main file and this machine's override, as deploy/compose's README runs it."""

    def __init__(self, project: str, env: dict[str, str]):
        self.project, self.env = project, env

    def __call__(self, *args: str, check: bool = True, timeout_s: float = 600) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "podman_compose", "-p", self.project, "-f", "docker-compose.yml",
                   "-f", "docker-compose.local.yml", *args]  # fmt: skip
        done = subprocess.run(command, cwd=COMPOSE, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if check and done.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def healthy(self, service: str, ports: dict[str, int]) -> bool:
        """`rlhf-loop health`, the main file's own check, from the host on the part's port."""
        target = {
            "labelstudio": f"http://127.0.0.1:{ports['LABEL_STUDIO_PORT']}/health",
            "reward": f"127.0.0.1:{ports['REWARD_PORT']}", "policy": f"127.0.0.1:{ports['POLICY_PORT']}",
            "backend": f"http://127.0.0.1:{ports['BACKEND_PORT']}/health",
        }[service]  # fmt: skip
        command = [sys.executable, "-m", "services.cli", "health", target, "--timeout-s", "2"]
        return subprocess.run(command, capture_output=True).returncode == 0

    def logs(self, service: str) -> str:
        done = podman("logs", "--tail", "60", self.container(service), check=False)
        return done.stdout + done.stderr


def loop_config(path: Path, ports: dict[str, int], database: str) -> None:
    path.write_text(toml_text({
        "state_url": database, "store_url": database,
        "reward_url": f"127.0.0.1:{ports['REWARD_PORT']}", "policy_url": f"127.0.0.1:{ports['POLICY_PORT']}",
        "labelstudio_url": f"http://127.0.0.1:{ports['LABEL_STUDIO_PORT']}", "project_title": TITLE,
        "prompts_file": "/prompts/prompts.jsonl", "iterations": 1, "prompts_per_iteration": 4, "candidates": 3,
        "heldout_prompts": 4, "max_new_tokens": 8, "simulate": True, "simulated_annotators": 2,
        "annotations_per_task": 2, "seed": 1, "metrics_port": ports["CONTROLLER_METRICS_PORT"],
        "service_retry_s": 300,
        "reward_train": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16},
        "policy_train": {"max_steps": 2, "prompts_per_step": 2, "num_generations": 4},
        "gates": {"min_rm_accuracy": 0.0, "min_rm_agreement_share": 0.0, "max_rm_accuracy_drop": 1.0,
                  "min_win_rate": 0.0},
    }))  # fmt: skip


@pytest.fixture(scope="module")
def stack(tiny_model_dir, postgres, tmp_path_factory):
    images = [build_image(progress=print), build_labelstudio_image(progress=print)]
    root = tmp_path_factory.mktemp("compose")
    root.chmod(0o755)
    model = world_readable_copy(tiny_model_dir, root / "model")
    ports = {name: free_port() for name in PORTS}
    database = postgres.new_database()
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n"
                                                for i in range(40)))  # fmt: skip
    loop_config(root / "loop.toml", ports, database)
    for path in (root / "prompts.jsonl", root / "loop.toml"):
        path.chmod(0o644)
    token = secrets.token_hex(20)
    env = {
        **container_env(), **{name: str(port) for name, port in ports.items()},
        "RLHF_LOOP_AUTH_TOKEN": secrets.token_hex(16), "RLHF_LOOP_BACKEND_PASSWORD": secrets.token_hex(16),
        "RLHF_LOOP_WEBHOOK_SECRET": secrets.token_hex(16), "POSTGRES_PASSWORD": "unused-the-host-server-trusts",
        "LABEL_STUDIO_USERNAME": "admin@rlhf-loop.local", "LABEL_STUDIO_PASSWORD": secrets.token_urlsafe(12),
        "LABEL_STUDIO_TOKEN": token, "GRAFANA_ADMIN_PASSWORD": "unused",
        "RLHF_LOOP_MODEL": str(model), "RLHF_LOOP_REWARD_MODEL": "/models/custom",
        "RLHF_LOOP_POLICY_MODEL": "/models/custom", "RLHF_LOOP_DATABASE_URL": database,
        "RLHF_LOOP_CONFIG": str(root / "loop.toml"), "RLHF_LOOP_PROMPTS_FILE": str(root / "prompts.jsonl"),
    }  # fmt: skip
    compose = Compose(f"rlhf{ports['BACKEND_PORT']}", env)
    started = time.monotonic()
    compose("up", "-d", *SERVICES)
    try:
        deadline = time.monotonic() + 600
        waiting = set(SERVICES)
        while waiting and time.monotonic() < deadline:
            waiting = {service for service in waiting if not compose.healthy(service, ports)}
            time.sleep(2)
        assert not waiting, "\n".join(f"{s}:\n{compose.logs(s)}" for s in waiting)
        healthy_s = round(time.monotonic() - started, 1)
        print(json.dumps({"images": images, "stack_healthy_s": healthy_s}))
        yield {"compose": compose, "ports": ports, "database": database, "token": token, "root": root,
               "labelstudio": f"http://127.0.0.1:{ports['LABEL_STUDIO_PORT']}", "healthy_s": healthy_s}  # fmt: skip
    finally:
        compose("down", "-v", check=False)


def test_one_iteration_runs_through_the_containers_and_every_part_is_scraped(stack):
    compose, ports = stack["compose"], stack["ports"]
    backend = f"http://127.0.0.1:{ports['BACKEND_PORT']}"
    compose("exec", "-T", "backend", "rlhf-loop", "project", "init", "--labelstudio-url", stack["labelstudio"],
            "--backend-url", backend, "--basic-auth-user", "labelstudio", "--title", TITLE,
            "--candidates", "3")  # fmt: skip
    targets = {"rlhf-reward": ports["REWARD_METRICS_PORT"], "rlhf-policy": ports["POLICY_METRICS_PORT"],
               "rlhf-backend": ports["BACKEND_PORT"], "rlhf-controller": ports["CONTROLLER_METRICS_PORT"]}  # fmt: skip
    with prometheus_scraping({job: f"127.0.0.1:{port}" for job, port in targets.items()}, stack["root"]) as prom:
        started = time.monotonic()
        compose("up", "-d", "controller")
        # The controller serves its metrics while the loop runs: every part is up at some moment of it.
        try:
            wait_for(prom, 'up{job=~"rlhf-.*"}', all_up(4), timeout_s=300)
        except AssertionError as error:
            raise AssertionError(f"{error}\ncontroller:\n{compose.logs('controller')}") from None
        code = podman("wait", compose.container("controller"), check=False).stdout.strip()
        iteration_s = round(time.monotonic() - started, 1)
    assert code == "0", compose.logs("controller")
    print(json.dumps({"iteration_through_containers_s": iteration_s, "stack_healthy_s": stack["healthy_s"]}))
    (record,) = LoopState(stack["database"]).history()
    assert record["stage"] == "done" and record["decision"] == "promote"

    # What the simulated annotators ranked in Label Studio is what the store holds.
    admin = LabelStudio(base_url=stack["labelstudio"], api_key=stack["token"])
    project = next(p for p in admin.projects.list() if p.title == TITLE)
    tasks = admin.projects.exports.as_json(project.id)
    store = PreferenceStore(stack["database"])
    annotated = {a["id"] for task in tasks for a in task["annotations"]}
    assert annotated and {p.annotation_id for p in store.all(project.id)} == annotated

    # One more ranking, made after the loop: only the webhook, container to container, can bring it in.
    task = tasks[0]
    order = [c["id"] for c in reversed(task["data"]["candidates"])]
    result = [{"type": "ranker", "from_name": "rank", "to_name": "candidates", "value": {"ranker": {"rank": order}}}]
    created = admin.annotations.create(id=task["id"], result=result)
    deadline = time.monotonic() + 60
    while created.id not in {p.annotation_id for p in store.all(project.id)} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert created.id in {p.annotation_id for p in store.all(project.id)}, compose.logs("backend")


def test_the_containers_run_as_the_images_users(stack):
    compose = stack["compose"]
    for service, user in (("reward", "10001"), ("labelstudio", "1001")):
        assert podman("exec", compose.container(service), "id", "-u").stdout.strip() == user, service
    assert os.geteuid() == 0  # the build and the runs need root here; the containers do not
