"""`pip install "rlhf-loop[client]"` in a fresh venv: the clients and reward adapters call real services, no ML stack.

The services run from the development venv; only the calls come from the client venv (~30 s to install
from this machine's local wheels).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# Run by the client venv's interpreter, isolated (-I) from the checkout and PYTHONPATH: it sees only what it installed.
CALLS = """
import asyncio, json, sys
from services.policy.client import PolicyClient
from services.reward.client import RewardClient
from services.reward.trl_reward import RemoteReward
from services.reward.verl_reward import compute_score

reward_target, policy_target = sys.argv[1:3]
with RewardClient(reward_target) as reward, PolicyClient(policy_target, timeout_s=120) as policy:
    scores, version = reward.score([("Hi", "Hello!"), ("Hi", "Go away.")])
    ranked = reward.rank("Hi", ["Hello!", "Go away.", "Hey"])
    generated = policy.generate(["Say hi."], n=2, max_new_tokens=8, seed=1)
    reward_versions = [v.id for v in reward.list_versions().versions]
    policy_versions = [v.id for v in policy.list_versions().versions]
trl_scores = asyncio.run(RemoteReward(reward_target)(prompts=["Hi"], completions=["Hello!"]))
verl_score = compute_score("chat", "Hello!", None, {"prompt": "Hi"}, reward_url=reward_target)
print(json.dumps({
    "scores": scores, "version": version, "rank_order": list(ranked.order),
    "completions": [len(row.completions) for row in generated.results],
    "reward_versions": reward_versions, "policy_versions": policy_versions,
    "trl_scores": trl_scores, "verl_score": verl_score,
    "services_from": __import__("services").__file__,
    "ml_stack_imported": sorted({"torch", "transformers", "numpy"} & set(sys.modules)),
}))
"""


def run(*command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh venv holding `rlhf-loop[client]` (at the locked versions), built from a copy of this tree."""
    root = tmp_path_factory.mktemp("client-install")
    # A copy, because setuptools builds inside the source tree (build/, *.egg-info), which other builds share.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("services", "labelstudio_backend"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = run(*install, "-c", str(ROOT / "constraints.txt"), f"{source}[client]", cwd=root, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_the_client_install_leaves_out_the_ml_stack(client_venv, tmp_path):
    for module in ("torch", "transformers"):
        imported = run(str(client_venv / "bin" / "python"), "-I", "-c", f"import {module}", cwd=tmp_path)
        assert imported.returncode != 0 and f"No module named '{module}'" in imported.stderr


def test_the_cli_helps_and_a_service_asks_for_the_server_extras(client_venv, tmp_path):
    rlhf_loop = str(client_venv / "bin" / "rlhf-loop")
    assert run(rlhf_loop, "--help", cwd=tmp_path).returncode == 0
    refused = run(rlhf_loop, "serve", "reward", "--registry", str(tmp_path / "registry"), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "pip install 'rlhf-loop[server]'" in refused.stderr, refused.stderr


def test_the_clients_call_real_services_without_the_ml_stack(client_venv, tiny_model_dir, tmp_path):
    with LocalStack(tmp_path, progress=lambda _: None) as stack:
        reward, policy = stack.reward(str(tiny_model_dir)), stack.policy(str(tiny_model_dir))
        called = run(str(client_venv / "bin" / "python"), "-I", "-c", CALLS, reward.target, policy.target, cwd=tmp_path)
    assert called.returncode == 0, called.stderr[-3000:]
    result = json.loads(called.stdout)
    assert Path(result["services_from"]).is_relative_to(client_venv)  # the installed copy, not the checkout
    assert result["ml_stack_imported"] == []
    assert len(result["scores"]) == 2 and result["version"] == "reward-0001"
    assert sorted(result["rank_order"]) == [0, 1, 2]
    assert result["completions"] == [2]
    assert result["reward_versions"] == ["reward-0001"] and result["policy_versions"] == ["policy-0001"]
    # The adapters score as the client does: the same pair, the same number.
    assert result["trl_scores"] == pytest.approx([result["scores"][0]], abs=1e-6)
    assert result["verl_score"] == pytest.approx(result["scores"][0], abs=1e-6)
