"""The policy service as a real process, with a real reward service, both on tiny models."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import psutil
import pytest

from services.core.rankings import group_pairs_by_prompt
from services.models.registry import ModelRegistry
from services.policy.client import PolicyClient
from services.policy.policy_model import PolicyModel, completion_logprobs
from services.reward.client import RewardClient
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

TRAIN_PROMPTS = [f"Can you tell me about topic {i}?" for i in range(16)]
HELDOUT_PROMPTS = [f"Can you tell me about subject {i}?" for i in range(32)]
GRPO = {"method": "grpo", "prompts_per_step": 2, "num_generations": 8, "max_new_tokens": 12, "seed": 1}


def status_of(call):
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


@pytest.fixture(scope="module")
def reward_server(tiny_model_dir, tmp_path_factory):
    """A reward service whose active model learned the friendly-over-hostile rule."""
    root = tmp_path_factory.mktemp("reward")
    process = ServiceProcess(
        "reward", ["--registry", str(root / "registry"), "--model", str(tiny_model_dir)], root / "reward.log"
    )
    process.wait_ready()
    with RewardClient(process.target, timeout_s=120) as client:
        events = list(
            client.train(
                synthetic_rankings(60, 4, seed=1), epochs=10, learning_rate=1e-3, batch_size=16, seed=1, promote=True
            )
        )
        assert events[-2].evaluation.heldout_accuracy >= 0.7
    yield process
    process.stop()


def start_policy(tiny_model_dir, registry, log, reward_target, *extra, env=None, cwd=None) -> ServiceProcess:
    process = ServiceProcess(
        "policy",
        ["--registry", str(registry), "--model", str(tiny_model_dir), "--reward-url", reward_target, *extra],
        log,
        env=env,
        cwd=cwd,
    )
    process.wait_ready()
    return process


@pytest.fixture(scope="module")
def policy_server(tiny_model_dir, reward_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    process = start_policy(
        tiny_model_dir,
        root / "registry",
        root / "policy.log",
        reward_server.target,
        "--gold-scorer",
        "tests.fixtures.gold_scorers:length",
    )
    process.registry = root / "registry"
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture(scope="module")
def policy(policy_server):
    with PolicyClient(policy_server.target, timeout_s=300) as client:
        yield client


def test_generate_returns_n_candidates_per_prompt_reproducibly(policy):
    reply = policy.generate(["Hello there", "Tell me a story"], n=3, temperature=0.9, seed=7, max_new_tokens=10)
    assert reply.version == "policy-0001" and len(reply.results) == 2
    for row in reply.results:
        assert len(row.completions) == 3
        for c in row.completions:
            assert 1 <= c.completion_tokens <= 10 and c.prompt_tokens > 0 and c.logprob_sum < 0
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or c.completion_tokens == 10
    again = policy.generate(["Hello there", "Tell me a story"], n=3, temperature=0.9, seed=7, max_new_tokens=10)
    assert again == reply
    other = policy.generate(["Hello there", "Tell me a story"], n=3, temperature=0.9, seed=8, max_new_tokens=10)
    assert other != reply


# Full fine-tuning on short answers: measured over 3 training seeds x 2 evaluation seeds (128 answers each) it
# raised the held-out reward by 1.06-1.49, while LoRA on this 64-wide model moved it by -0.06..0.40 -- a margin
# that one CPU's float kernels pass and another's fail. The assertion asks for 0.5, far from both.
GRPO_FULL = {"method": "grpo", "use_lora": False, "learning_rate": 3e-3, "beta": 0.0, "prompts_per_step": 4,
             "num_generations": 8, "max_new_tokens": 6, "seed": 1}  # fmt: skip


def test_grpo_against_the_reward_service_raises_the_held_out_reward(policy, reward_server):
    events = list(policy.train(prompts=TRAIN_PROMPTS, max_steps=30, **GRPO_FULL))
    progress = [e.progress for e in events[:-1]]
    assert [p.step for p in progress] == list(range(1, 31)) and all(p.step_seconds > 0 for p in progress)
    version = events[-1].version
    assert version.id == "policy-0002" and version.parent == "policy-0001"
    metadata = json.loads(version.metadata_json)
    assert metadata["method"] == "grpo" and metadata["format"] == "full"
    assert metadata["reward_versions"] == ["reward-0002"] and metadata["config"]["learning_rate"] == 3e-3
    # Four answers per held-out prompt from each version, two sampling seeds.
    for seed in (5, 6):
        result = policy.evaluate(version.id, HELDOUT_PROMPTS * 4, max_new_tokens=6, seed=seed, temperature=1.0)
        assert result.prompts == 128 and result.reward_version == "reward-0002"
        assert result.candidate_mean_reward > result.baseline_mean_reward + 0.5, result
        assert result.has_gold and 0 <= result.gold_win_rate <= 1  # gold = response length here
        assert result.candidate_mean_gold > 0 and result.baseline_mean_gold > 0
    same = policy.evaluate(version.id, HELDOUT_PROMPTS, max_new_tokens=6, seed=5, temperature=1.0)
    assert same == policy.evaluate(version.id, HELDOUT_PROMPTS, max_new_tokens=6, seed=5, temperature=1.0)


def test_continued_training_measures_kl_to_the_base_and_stops_at_target_kl(policy):
    train = {**GRPO, "seed": 2}
    first = list(policy.train(prompts=TRAIN_PROMPTS, max_steps=20, learning_rate=3e-2, beta=0.0, **train))[-1].version
    events = list(
        policy.train(prompts=TRAIN_PROMPTS, max_steps=10, learning_rate=1e-3, beta=0.05, init_version=first.id,
                     target_kl=1e-3, **train)
    )  # fmt: skip
    progress = [e.progress for e in events[:-1]]
    # The reference is the base, as Evaluate's: against a frozen copy of `first` the first step's KL would be 0.
    assert progress[0].kl > 1e-3, progress[0]
    # Past the target from its first step, the run stops there and still makes a version.
    metadata = json.loads(events[-1].version.metadata_json)
    assert len(progress) == metadata["metrics"]["steps"] == 1, [p.kl for p in progress]
    assert metadata["parent"] == first.id and metadata["config"]["target_kl"] == 1e-3


def test_dpo_raises_the_chosen_over_rejected_margin(policy, policy_server, tiny_model_dir):
    rankings = synthetic_rankings(12, 3, seed=4)
    events = list(
        policy.train(rankings=rankings, method="dpo", epochs=3, learning_rate=5e-3, prompts_per_step=4, seed=1)
    )
    version = events[-1].version
    registry = ModelRegistry(policy_server.registry, "policy")
    pairs = [p for group in group_pairs_by_prompt(rankings).values() for p in group]
    model = PolicyModel(tiny_model_dir)

    def margin(version_id: str) -> float:
        with model.using(registry.get(version_id)) as m:
            chosen = completion_logprobs(m, model.tokenizer, [p.prompt for p in pairs], [" " + p.chosen for p in pairs])
            rejected = completion_logprobs(
                m, model.tokenizer, [p.prompt for p in pairs], [" " + p.rejected for p in pairs]
            )
        return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)

    assert margin(version.id) > margin("policy-0001") + 1.0


def test_rloo_with_full_fine_tuning_makes_a_servable_full_version(policy):
    events = list(
        policy.train(
            prompts=TRAIN_PROMPTS, max_steps=2, use_lora=False, learning_rate=1e-4, **{**GRPO, "method": "rloo"}
        )
    )
    metadata = json.loads(events[-1].version.metadata_json)
    assert metadata["method"] == "rloo" and metadata["format"] == "full"
    reply = policy.generate(["Hi"], n=2, max_new_tokens=4, seed=1, version=events[-1].version.id)
    assert reply.version == events[-1].version.id and len(reply.results[0].completions) == 2


def test_promote_switches_generate_without_failing_in_flight_calls(policy, policy_server):
    versions = policy.list_versions()
    newest = versions.versions[-1].id
    assert versions.active == "policy-0001"
    errors, seen, stop = [], set(), threading.Event()

    def keep_generating() -> None:
        with PolicyClient(policy_server.target, timeout_s=60) as own:
            while not stop.is_set():
                try:
                    seen.add(own.generate(["Hi"], n=2, max_new_tokens=4).version)
                except grpc.RpcError as error:
                    errors.append(error)

    threads = [threading.Thread(target=keep_generating) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        assert policy.promote(newest).active == newest
        threading.Event().wait(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and newest in seen
    assert policy.generate(["Hi"], n=1, max_new_tokens=4, seed=1).version == newest
    assert policy.generate(["Hi"], n=1, max_new_tokens=4, seed=1, version="policy-0001").version == "policy-0001"
    assert policy.rollback().active == "policy-0001"


def test_bad_inputs_get_precise_status_codes(policy):
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: policy.generate(["Hi"], n=0))[0] == invalid
    code, details = status_of(lambda: policy.generate(["Hi"], n=10_000))
    assert code == invalid and "16" in details
    assert status_of(lambda: policy.generate(["Hi"], temperature=-1.0))[0] == invalid
    assert status_of(lambda: policy.generate(["Hi"], max_new_tokens=100_000))[0] == invalid
    assert status_of(lambda: policy.generate([]))[0] == invalid
    assert status_of(lambda: policy.generate(["Hi"], version="policy-9999"))[0] == grpc.StatusCode.NOT_FOUND
    code, details = status_of(lambda: list(policy.train(prompts=["Hi"], method="ppo")))
    assert code == invalid and "ppo" in details
    assert status_of(lambda: list(policy.train(prompts=["Hi"], learning_rate=float("nan"))))[0] == invalid
    code, details = status_of(lambda: list(policy.train(prompts=["Hi"], beta=0.0, target_kl=5.0)))
    assert code == invalid and "target_kl" in details
    assert status_of(lambda: list(policy.train(rankings=[], method="dpo")))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(lambda: policy.evaluate("policy-4242", ["Hi"]))[0] == grpc.StatusCode.NOT_FOUND


def test_reward_service_down_fails_training_with_unavailable(tiny_model_dir, tmp_path):
    process = start_policy(tiny_model_dir, tmp_path / "registry", tmp_path / "p.log", f"127.0.0.1:{free_port()}")
    try:
        with PolicyClient(process.target, timeout_s=60) as client:
            code, details = status_of(lambda: list(client.train(prompts=TRAIN_PROMPTS, max_steps=2, **GRPO)))
            assert code == grpc.StatusCode.UNAVAILABLE and "reward service" in details
            assert [v.id for v in client.list_versions().versions] == ["policy-0001"]
    finally:
        assert process.stop() == 0


def test_sigkill_mid_training_then_restart_resumes_from_the_checkpoint(tiny_model_dir, reward_server, tmp_path):
    registry = tmp_path / "registry"
    request = {"prompts": TRAIN_PROMPTS, "max_steps": 12, "save_steps": 3, "learning_rate": 1e-2, **GRPO}
    first = start_policy(tiny_model_dir, registry, tmp_path / "first.log", reward_server.target)
    with PolicyClient(first.target, timeout_s=300) as client:
        stream = client.train(**request)
        for event in stream:
            if event.progress.step >= 4:  # the step-3 checkpoint is on disk
                break
        workers = [c.pid for c in psutil.Process(first.process.pid).children(recursive=True)]
        assert workers
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        stream.cancel()
    first.stop()
    psutil.wait_procs([psutil.Process(p) for p in workers if psutil.pid_exists(p)], timeout=30)
    assert not [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert list((registry / "runs").glob("*/checkpoint-3"))

    second = start_policy(tiny_model_dir, registry, tmp_path / "second.log", reward_server.target)
    try:
        with PolicyClient(second.target, timeout_s=300) as client:
            events = list(client.train(**request))
            progress = [e.progress for e in events[:-1]]
            assert progress[0].resumed and progress[0].step == 4
            assert progress[-1].step == 12
            assert events[-1].version.id == "policy-0002"
            assert [v.id for v in client.list_versions().versions] == ["policy-0001", "policy-0002"]
        assert not list((registry / "runs").iterdir())
    finally:
        assert second.stop() == 0


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory) -> Path:
    """The project installed as users and the image get it: built into a wheel, not an editable checkout."""
    site = tmp_path_factory.mktemp("site-packages")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(ROOT)],
        check=True,
        timeout=600,
    )
    return site


def test_two_process_torchrun_run_produces_one_version(tiny_model_dir, reward_server, tmp_path, installed_package):
    # Run from the installed copy, outside the checkout: torchrun must find the worker inside the package.
    env, cwd = {"PYTHONPATH": str(installed_package)}, tmp_path
    locate = "from services.policy.training import worker; print(worker.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", locate], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, check=True
    )
    assert Path(where.stdout.strip()).is_relative_to(installed_package)
    assert not (installed_package / "tests").exists()  # the installed package carries no test tree
    process = start_policy(
        tiny_model_dir, tmp_path / "registry", tmp_path / "p.log", reward_server.target, "--train-processes", "2",
        env=env, cwd=cwd,
    )  # fmt: skip
    try:
        with PolicyClient(process.target, timeout_s=300) as client:
            events = list(client.train(rankings=synthetic_rankings(8, 3), method="dpo", prompts_per_step=2, seed=1))
            metadata = json.loads(events[-1].version.metadata_json)
            assert metadata["metrics"]["processes"] == 2 and metadata["metrics"]["nodes"] == 1
            assert [v.id for v in client.list_versions().versions] == ["policy-0001", "policy-0002"]
    finally:
        assert process.stop() == 0


def test_cancelling_training_keeps_the_service_usable(policy):
    before = [v.id for v in policy.list_versions().versions]
    stream = policy.train(prompts=TRAIN_PROMPTS, max_steps=200, save_steps=100, **GRPO)
    next(stream)
    stream.cancel()
    for _ in range(100):
        if not policy.info().training:
            break
        threading.Event().wait(0.1)
    assert not policy.info().training
    assert [v.id for v in policy.list_versions().versions] == before
    assert len(policy.generate(["Hi"], n=2, max_new_tokens=4).results[0].completions) == 2


def test_metrics_expose_generation_and_training(policy_server, policy):
    import urllib.request

    text = urllib.request.urlopen(f"{policy_server.http}/metrics", timeout=10).read().decode()
    for needle in (
        'rlhf_policy_requests_total{code="OK",method="Generate"}',
        "rlhf_policy_request_duration_seconds_bucket",
        "rlhf_policy_generated_tokens_total",
        "rlhf_policy_tokens_per_second",
        "rlhf_policy_train_step_seconds_bucket",
        "rlhf_policy_reward_mean",
        "rlhf_policy_reward_std",
        "rlhf_policy_kl",
        "rlhf_policy_train_loss",
        'rlhf_policy_model_info{backend="transformers",version="policy-',
    ):
        assert needle in text, needle
