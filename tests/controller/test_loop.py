"""The loop end to end: tiny models, real services and Label Studio, simulated annotators."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.preference_store import PreferenceStore
from services.controller.loop_config import toml_text
from services.controller.loop_state import LoopState
from services.policy.client import PolicyClient
from services.reward.client import RewardClient
from services.tools.service_process import ServiceProcess

pytestmark = pytest.mark.integration

# The services require a bearer token, as in production; no secret may show up in a log or a metric.
TOKEN = "loop-test-token-4e1b9c"
WITH_TOKEN = {"RLHF_LOOP_AUTH_TOKEN": TOKEN}
OUTPUTS: list[str] = []  # what every `loop` command printed, for the secrets check at the end
# A reward gate every trained model passes: these tests are about the loop's mechanics, not the tiny model's skill.
OPEN_RM_GATE = {"min_rm_accuracy": 0.0, "min_rm_agreement_share": 0.0, "max_rm_accuracy_drop": 1.0}


def start_reward(tiny_model_dir, root, port=None) -> ServiceProcess:
    reward = ServiceProcess(
        "reward", ["--registry", str(root / "reward"), "--model", str(tiny_model_dir)], root / "r.log", port=port,
        env=WITH_TOKEN,
    )  # fmt: skip
    reward.wait_ready()
    return reward


@pytest.fixture(scope="module")
def running(tiny_model_dir, tmp_path_factory):
    """The services, in a dict so that a test may replace one it killed."""
    root = tmp_path_factory.mktemp("loop-services")
    reward = start_reward(tiny_model_dir, root)
    policy = ServiceProcess(
        "policy",
        ["--registry", str(root / "policy"), "--model", str(tiny_model_dir), "--reward-url", reward.target,
         "--gold-scorer", "services.sim.gold:vader_positivity"],
        root / "p.log", env={**WITH_TOKEN, "RLHF_LOOP_REWARD_TOKEN": TOKEN},
    )  # fmt: skip
    policy.wait_ready()
    state = {"reward": reward, "policy": policy, "root": root}
    yield state
    state["policy"].stop()
    state["reward"].stop()


@pytest.fixture
def services(running):
    return running["reward"], running["policy"]


def write_config(path, labelstudio, reward, policy, title: str, **overrides) -> None:
    settings = {
        "state_url": f"sqlite:///{path.parent / (title + '-state.db')}",
        "store_url": f"sqlite:///{path.parent / (title + '-prefs.db')}",
        "reward_url": reward.target, "policy_url": policy.target,
        "labelstudio_data_dir": str(labelstudio.data_dir), "project_title": title,
        "iterations": 2, "prompts_per_iteration": 4, "candidates": 3, "heldout_prompts": 4, "max_new_tokens": 8,
        "simulate": True, "simulated_annotators": 2, "annotations_per_task": 2,
        "reward_train": {"epochs": 4, "learning_rate": 1e-3, "batch_size": 16},
        "policy_train": {"max_steps": 4, "prompts_per_step": 2, "num_generations": 4, "learning_rate": 1e-2},
    }  # fmt: skip
    path.write_text(toml_text(settings | overrides))


def loop(*args):
    result = subprocess.run([sys.executable, "-m", "services.cli", "loop", *args], capture_output=True, text=True,
                            env={**os.environ, **WITH_TOKEN})  # fmt: skip
    OUTPUTS.append(result.stdout + result.stderr)
    return result


def test_two_iterations_run_end_to_end(labelstudio, services, tmp_path):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-e2e", first_round_prompts=5,
                 gates={**OPEN_RM_GATE, "min_win_rate": 0.0})  # fmt: skip
    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads(result.stdout)
    assert [r["iteration"] for r in history] == [1, 2] and {r["stage"] for r in history} == {"done"}
    for r, tasks in zip(history, (5, 4), strict=True):  # the first round is the larger one
        assert r["rankings"] == tasks * 2 and len(r["task_ids"]) == tasks
        assert r["reward_version"].startswith("reward-") and r["policy_version"].startswith("policy-")
        assert r["decision"] == "promote" and 0 <= r["win_rate"] <= 1 and "gold_win_rate" in r
    assert history[0]["task_ids"] != history[1]["task_ids"]
    with RewardClient(reward.target, token=TOKEN) as client:
        assert client.info().active_version == history[1]["reward_version"]
    # The store equals Label Studio's export.
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    project = next(p for p in admin.projects.list() if p.title == "loop-e2e")
    exported = {a["id"] for t in admin.projects.exports.as_json(project.id) for a in t["annotations"]}
    store = PreferenceStore(f"sqlite:///{tmp_path / 'loop-e2e-prefs.db'}")
    assert {p.annotation_id for p in store.all(project.id)} == exported
    # Run again: everything is done, nothing is duplicated.
    again = loop("run", "--config", str(config))
    assert again.returncode == 0 and json.loads(again.stdout) == history
    assert len(admin.projects.exports.as_json(project.id)) == 9
    status = json.loads(loop("status", "--config", str(config)).stdout)
    assert status[0]["iteration"] == 2

    # The report: the gold scorer judges the initial, each iteration's and the final policy.
    out = tmp_path / "report"
    made = loop("report", "--config", str(config), "--out", str(out), "--samples", "2")
    assert made.returncode == 0, made.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert json.loads(made.stdout)["gold_win_rate"] == report["gold_win_rate"]
    assert report["initial_version"] == "policy-0001" and report["final_version"] == history[1]["policy_version"]
    assert (report["heldout_prompts"], report["samples_per_prompt"]) == (4, 2)
    low, high = report["gold_win_rate_ci"]
    assert 0 <= low <= report["gold_win_rate"] <= high <= 1
    assert [r["policy_version"] for r in report["iterations"]] == [r["policy_version"] for r in history]
    assert [r["rankings"] for r in report["iterations"]] == [10, 8]
    assert all(r["gold_mean"] is not None and 0 <= r["distinct_1"] <= 1 for r in report["iterations"])
    assert report["iterations"][1]["policy_started_from"] == history[0]["policy_version"]
    for name in ("report.md", "report.html", "scores.png", "reward_model.png", "rankings.png"):
        assert (out / name).stat().st_size > 0
    assert f"gold win-rate {report['gold_win_rate']:.3f}" in (out / "report.md").read_text()


def test_an_impossible_gate_rolls_back(labelstudio, services, tmp_path):
    reward, policy = services
    config = tmp_path / "loop.toml"
    gates = {**OPEN_RM_GATE, "min_win_rate": 1.01}
    write_config(config, labelstudio, reward, policy, "loop-gate", iterations=1, gates=gates, seed=5)
    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["decision"] == "rollback" and "win-rate" in record["policy_reasons"][0]


def test_no_policy_is_trained_before_a_reward_model_passes_its_gate(labelstudio, services, tiny_model_dir, tmp_path):
    _, policy = services
    fresh_reward = start_reward(tiny_model_dir, tmp_path)  # only its untrained base version serves
    try:
        config = tmp_path / "loop.toml"
        write_config(config, labelstudio, fresh_reward, policy, "loop-no-rm", iterations=1,
                     gates={"max_rm_accuracy_drop": -1.01}, seed=7)  # fmt: skip
        with PolicyClient(policy.target, token=TOKEN) as client:
            versions_before = len(client.list_versions().versions)
        result = loop("run", "--config", str(config))
        assert result.returncode == 0, result.stderr[-3000:]
        (record,) = json.loads(result.stdout)
        assert record["rm_reasons"] and record["policy_version"] is None and record["decision"] == "rollback"
        assert record["policy_reasons"] == ["no trained reward model has passed its gate yet"]
        with PolicyClient(policy.target, token=TOKEN) as client:
            assert len(client.list_versions().versions) == versions_before
    finally:
        fresh_reward.stop()


@pytest.mark.parametrize(
    "override, message",
    [
        ({"policy_method": "ppo"}, "ppo"),
        ({"gold": "nowhere:nothing"}, "gold scorer"),
        ({"prompts_per_iteration": -2}, "prompts_per_iteration"),
        ({"first_round_prompts": -1}, "first_round_prompts"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_config_is_refused_before_anything_starts(labelstudio, services, tmp_path, override, message):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-bad", **override)
    result = loop("run", "--config", str(config))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "loop-bad-state.db").exists()


def wait_for_stage(state_url: str, stage: str, process, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else "controller exited"
        if LoopState(state_url).load(1)[0] == stage:
            return
        time.sleep(0.1)
    raise AssertionError(f"never reached {stage}")


def kill_once(controller: subprocess.Popen, ready, timeout_s: float) -> None:
    """SIGKILL the controller as soon as `ready()` holds (it must still be running then)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline and controller.poll() is None
        time.sleep(0.1)
    controller.kill()
    controller.wait()


def start_loop(config) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "loop", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **WITH_TOKEN},
    )  # fmt: skip


def wait_until_not_training(reward: ServiceProcess, timeout_s: float = 30.0) -> None:
    """A killed controller's training call goes on in the reward service until the service notices the cancel."""
    with RewardClient(reward.target, token=TOKEN) as client:
        deadline = time.monotonic() + timeout_s
        while client.info().training and time.monotonic() < deadline:
            time.sleep(0.1)


def test_sigkill_of_the_controller_during_training_resumes_without_duplicates(labelstudio, running, tmp_path):
    reward, policy = running["reward"], running["policy"]
    config = tmp_path / "loop.toml"
    write_config(
        config, labelstudio, reward, policy, "loop-kill", iterations=1, gates=OPEN_RM_GATE, seed=11,
        reward_train={"epochs": 100, "learning_rate": 1e-3, "batch_size": 2},
        policy_train={"max_steps": 40, "save_steps": 2, "prompts_per_step": 2, "num_generations": 4},
    )  # fmt: skip
    state_url = f"sqlite:///{tmp_path / 'loop-kill-state.db'}"
    with RewardClient(reward.target, token=TOKEN) as client:
        reward_before = len(client.list_versions().versions)
    policy_registry = running["root"] / "policy"
    policy_before = len(list((policy_registry / "versions").iterdir()))

    controller = start_loop(config)
    wait_for_stage(state_url, "reward", controller)
    time.sleep(1.0)  # mid-training
    controller.kill()
    controller.wait()
    wait_until_not_training(reward)

    controller = start_loop(config)
    wait_for_stage(state_url, "policy", controller)
    kill_once(controller, lambda: list((policy_registry / "runs").glob("*/checkpoint-*")), timeout_s=120)

    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["stage"] == "done"
    with RewardClient(reward.target, token=TOKEN) as client:
        assert len(client.list_versions().versions) == reward_before + 1  # no duplicate version
    assert len(list((policy_registry / "versions").iterdir())) == policy_before + 1
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    project = next(p for p in admin.projects.list() if p.title == "loop-kill")
    assert len(admin.projects.exports.as_json(project.id)) == 4  # no duplicate tasks


def test_a_loop_on_postgresql_resumes_after_a_kill_and_its_store_equals_label_studio(
    labelstudio, running, postgres, tmp_path
):
    reward, policy = running["reward"], running["policy"]
    database = postgres.new_database()  # the store and the loop state share it, as in the compose stack
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-postgres", iterations=1, state_url=database,
                 store_url=database, gates={**OPEN_RM_GATE, "min_win_rate": 0.0})  # fmt: skip
    controller = start_loop(config)
    wait_for_stage(database, "reward", controller)
    controller.kill()
    controller.wait()
    wait_until_not_training(reward)

    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["stage"] == "done" and record["rankings"] == 4 * 2
    assert LoopState(database).load(1)[0] == "done"
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)
    project = next(p for p in admin.projects.list() if p.title == "loop-postgres")
    exported = admin.projects.exports.as_json(project.id)
    assert len(exported) == 4  # no duplicate tasks after the kill
    annotations = {a["id"] for t in exported for a in t["annotations"]}
    assert {p.annotation_id for p in PreferenceStore(database).all(project.id)} == annotations


def test_a_reward_service_killed_mid_iteration_is_waited_for(labelstudio, running, tiny_model_dir, tmp_path):
    reward, policy = running["reward"], running["policy"]
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-outage", iterations=1, gates=OPEN_RM_GATE, seed=13)
    state_url = f"sqlite:///{tmp_path / 'loop-outage-state.db'}"
    controller = start_loop(config)
    wait_for_stage(state_url, "collect", controller)
    reward.process.kill()
    reward.process.wait()
    time.sleep(8)  # the controller reaches the reward stage and keeps retrying
    running["reward"] = start_reward(tiny_model_dir, running["root"], port=reward.port)
    assert controller.wait(timeout=300) == 0
    stage, record = LoopState(state_url).load(1)
    assert stage == "done" and record["reward_version"].startswith("reward-")


def test_start_training_from_the_backend_triggers_an_iteration(labelstudio, services, tmp_path):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-watch", gates=OPEN_RM_GATE, seed=17)
    store = PreferenceStore(f"sqlite:///{tmp_path / 'loop-watch-prefs.db'}")
    state = LoopState(f"sqlite:///{tmp_path / 'loop-watch-state.db'}")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "loop", "watch", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **WITH_TOKEN},
    )  # fmt: skip
    try:
        time.sleep(10)
        assert state.history() == []  # nothing runs without a trigger
        store.request_training(project_id=1)  # what the backend does on START_TRAINING
        deadline = time.monotonic() + 300
        while not (state.history() and state.history()[0]["stage"] == "done"):
            assert time.monotonic() < deadline and watcher.poll() is None
            time.sleep(0.5)
        while store.pending_training_requests():
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert len(state.history()) == 1
    finally:
        watcher.kill()
        watcher.wait()


def test_no_token_or_password_in_any_log_or_metric(labelstudio, running):
    """Runs last: greps every log and output of the runs above, and the services' metrics, for secrets."""
    secrets = [TOKEN, labelstudio.password, labelstudio.token]
    texts = [path.read_text(errors="replace") for path in running["root"].rglob("*.log")] + OUTPUTS
    texts += [
        urllib.request.urlopen(f"{running[s].http}/metrics", timeout=10).read().decode() for s in ("reward", "policy")
    ]
    assert len(texts) >= 4 and any("iteration 1" in t for t in OUTPUTS)
    for secret in secrets:
        assert not any(secret in text for text in texts), "a secret leaked"


def test_people_judge_the_policy_in_tasks_of_their_own_and_a_kill_while_waiting_duplicates_none(
    labelstudio, services, tmp_path
):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-people", iterations=1, policy_judge="people",
                 gates={**OPEN_RM_GATE, "min_win_rate": 0.0}, seed=19)  # fmt: skip
    state_url = f"sqlite:///{tmp_path / 'loop-people-state.db'}"
    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)

    def evaluation_tasks() -> list:
        project = next((p for p in admin.projects.list() if p.title == "loop-people · policy evaluation"), None)
        return list(admin.tasks.list(project=project.id, fields="all")) if project else []

    controller = start_loop(config)
    wait_for_stage(state_url, "judge", controller)
    kill_once(controller, evaluation_tasks, timeout_s=300)  # imported; the simulated people are answering

    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    tasks = evaluation_tasks()
    assert len(tasks) == 4  # one per held-out prompt, none twice after the kill
    assert all(sum(not a["was_cancelled"] for a in t.annotations) == 2 for t in tasks)
    assert record["human_eval_tasks"] == 4 and record["human_votes"] == 8
    assert 0 <= record["human_win_rate"] <= 1 and set(record["judges_agreement"]) == {
        "proxy_people", "proxy_gold", "people_gold"}  # fmt: skip
    assert record["decision"] == "promote"
    # Evaluation prompts are held out of annotation, and their project is never synced into the store:
    # none of them reaches reward-model training.
    store = PreferenceStore(f"sqlite:///{tmp_path / 'loop-people-prefs.db'}")
    heldout = {t.data["prompt"] for t in tasks}
    assert store.rankings() and not heldout & {r.prompt for r in store.rankings()}
    project_ids = {p.project_id for p in store.all()}
    assert record["evaluation_project_id"] not in project_ids
