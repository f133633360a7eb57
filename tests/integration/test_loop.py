"""The loop end to end: tiny models, real services and Label Studio, simulated annotators."""

import json
import subprocess
import sys

import pytest
from label_studio_sdk import LabelStudio

from labelstudio_backend.preference_store import PreferenceStore
from services.reward.client import RewardClient
from services.service_process import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop-services")
    reward = ServiceProcess(
        "reward", ["--registry", str(root / "reward"), "--model", str(tiny_model_dir)], root / "r.log"
    )
    reward.wait_ready()
    policy = ServiceProcess(
        "policy",
        ["--registry", str(root / "policy"), "--model", str(tiny_model_dir), "--reward-url", reward.target,
         "--gold-scorer", "services.gold:vader_positivity"],
        root / "p.log",
    )  # fmt: skip
    policy.wait_ready()
    yield reward, policy
    policy.stop()
    reward.stop()


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
    settings |= overrides
    lines = []
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    for key, value in settings.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables.items():
        lines.append(f"[{key}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")


def loop(*args):
    return subprocess.run([sys.executable, "-m", "services.cli", "loop", *args], capture_output=True, text=True)


def test_two_iterations_run_end_to_end(labelstudio, services, tmp_path):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-e2e", gates={"min_rm_accuracy": 0.0, "min_win_rate": 0.0})
    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads(result.stdout)
    assert [r["iteration"] for r in history] == [1, 2] and {r["stage"] for r in history} == {"done"}
    for r in history:
        assert r["rankings"] == 4 * 2 and len(r["task_ids"]) == 4
        assert r["reward_version"].startswith("reward-") and r["policy_version"].startswith("policy-")
        assert r["decision"] == "promote" and 0 <= r["win_rate"] <= 1 and "gold_win_rate" in r
    assert history[0]["task_ids"] != history[1]["task_ids"]
    with RewardClient(reward.target) as client:
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
    assert len(admin.projects.exports.as_json(project.id)) == 8
    status = json.loads(loop("status", "--config", str(config)).stdout)
    assert status[0]["iteration"] == 2


def test_an_impossible_gate_rolls_back(labelstudio, services, tmp_path):
    reward, policy = services
    config = tmp_path / "loop.toml"
    write_config(config, labelstudio, reward, policy, "loop-gate", iterations=1, gates={"min_win_rate": 1.01})
    result = loop("run", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = json.loads(result.stdout)
    assert record["decision"] == "rollback" and "win-rate" in record["policy_reasons"][0]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"policy_method": "ppo"}, "ppo"),
        ({"gold": "nowhere:nothing"}, "gold scorer"),
        ({"prompts_per_iteration": -2}, "prompts_per_iteration"),
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
