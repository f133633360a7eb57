"""Policy training across processes and machines: the launch spec, and two "nodes" on loopback (gloo) that train
one version through the real policy service."""

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from services.core.errors import InvalidRequestError, PreconditionError
from services.policy.client import PolicyClient
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.launch import WORKER_MODULE, LaunchSpec
from services.policy.training.run_group import missing_here
from services.policy.training.runner import run_key, worker_command
from services.policy.training.spec import TrainSpec
from services.policy.training.trainable import common_args
from services.sim.synthetic_rankings import synthetic_rankings
from services.tools.service_process import ServiceProcess, free_port

TWO_NODES = LaunchSpec(nodes=2, rendezvous="10.0.0.5:29500")


@pytest.mark.parametrize(
    "launch, cuda, error, message",
    [
        (LaunchSpec(nodes=2), False, InvalidRequestError, "not HOST:PORT"),
        (LaunchSpec(nodes=2, rendezvous="node0"), False, InvalidRequestError, "not HOST:PORT"),
        (LaunchSpec(nodes=2, rendezvous="node0:70000"), False, InvalidRequestError, "not HOST:PORT"),
        (LaunchSpec(nodes=0), False, InvalidRequestError, "nodes must be"),
        (LaunchSpec(processes_per_node=0), False, InvalidRequestError, "processes per node"),
        (LaunchSpec(nodes=2, node_rank=2, rendezvous="h:1"), False, InvalidRequestError, "node rank 2"),
        (LaunchSpec(rendezvous_backend="etcd"), False, InvalidRequestError, "rendezvous backend 'etcd'"),
        (LaunchSpec(strategy="zero3"), False, InvalidRequestError, "strategy 'zero3'"),
        (LaunchSpec(join_timeout_s=0), False, InvalidRequestError, "join timeout"),
        (LaunchSpec(strategy="fsdp"), True, InvalidRequestError, "at least 2"),
        (LaunchSpec(processes_per_node=2, strategy="fsdp"), False, PreconditionError, "fsdp needs CUDA"),
    ],
)
def test_bad_launch_specs_are_refused_with_the_reason(launch, cuda, error, message):
    with pytest.raises(error, match=message):
        launch.validate(cuda=cuda)


def test_good_launch_specs_pass():
    for launch in (LaunchSpec(), LaunchSpec(processes_per_node=4), TWO_NODES, LaunchSpec(nodes=3, node_rank=2,
                   rendezvous="[fd00::1]:29500", rendezvous_backend="c10d")):  # fmt: skip
        launch.validate(cuda=False)
    LaunchSpec(processes_per_node=8, strategy="fsdp").validate(cuda=True)


def test_the_launch_command_runs_the_worker_alone_or_under_torchrun(tmp_path):
    spec = str(tmp_path / "spec.json")
    single = worker_command(tmp_path / "spec.json", LaunchSpec())
    assert single[1:] == ["-m", "services.policy.training.orphan_guard", str(os.getpid()), WORKER_MODULE, spec]
    one_node = LaunchSpec(processes_per_node=2).worker_command([spec])
    assert one_node == ["torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", WORKER_MODULE, spec]
    node0 = TWO_NODES.worker_command([spec])
    assert node0 == ["torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                     "--rdzv-backend", "static", "--rdzv-endpoint", "10.0.0.5:29500",
                     "--rdzv-id", "rlhf-loop-policy-training", "--node-rank", "0", "--rdzv-conf", "timeout=600",
                     "-m", WORKER_MODULE, spec]  # fmt: skip
    # `train node`: the same torchrun with its own rank and no spec (it comes from node 0 once the group forms).
    node1 = LaunchSpec(nodes=2, node_rank=1, rendezvous="h:1", rendezvous_backend="c10d", join_timeout_s=60)
    command = node1.worker_command([])
    assert "--node-rank" not in command and command[-2:] == ["-m", WORKER_MODULE]  # c10d ranks the nodes itself
    assert command[command.index("--rdzv-conf") + 1] == "join_timeout=60,read_timeout=60"
    static = LaunchSpec(nodes=2, node_rank=1, rendezvous="h:1").worker_command([])
    assert static[static.index("--node-rank") + 1] == "1"


def test_the_run_key_depends_on_world_size_and_strategy_not_on_where_nodes_meet():
    def key(launch: LaunchSpec) -> str:
        return run_key(PolicyTrainConfig(), "digest", "policy-0001", Path("/base"), launch)

    # A restarted identical run resumes even when node 0 comes back at another address or rendezvous.
    moved = LaunchSpec(nodes=2, rendezvous="10.0.0.9:1234", rendezvous_backend="c10d", join_timeout_s=30)
    assert key(TWO_NODES) == key(moved) == key(LaunchSpec(processes_per_node=2))
    assert key(TWO_NODES) != key(LaunchSpec())  # checkpoints hold per-rank RNG states and per-rank data shards
    assert key(LaunchSpec(processes_per_node=2, strategy="fsdp")) != key(LaunchSpec(processes_per_node=2))


def test_fsdp_asks_the_trainer_for_fsdp2_with_full_checkpoints(tmp_path):
    from trl import DPOConfig

    config = PolicyTrainConfig(method="dpo")
    fsdp = DPOConfig(**common_args(config, tmp_path, "fsdp")).fsdp_plugin_args
    assert fsdp["fsdp_version"] == 2 and fsdp["state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"  # each decoder layer its own shard unit
    assert DPOConfig(**common_args(config, tmp_path, "ddp")).fsdp_plugin_args is None


def test_a_node_names_what_it_cannot_see(tmp_path):
    (tmp_path / "base").mkdir()
    spec = TrainSpec(PolicyTrainConfig(), tmp_path / "base", tmp_path / "adapter", tmp_path / "run", tmp_path / "out",
                     strategy="fsdp")  # fmt: skip
    problems = missing_here(spec, node=1, cuda=False)
    assert [p.split(" at ")[0] for p in problems[:2]] == ["node 1 does not see the run directory",
                                                          "node 1 does not see the init version"]  # fmt: skip
    assert "fsdp needs GPUs" in problems[2] and len(problems) == 3
    assert TrainSpec.from_json(spec.to_json()) == spec


# -- real processes ---------------------------------------------------------------------------------------------

DPO = {"method": "dpo", "prompts_per_step": 2, "seed": 1}  # the tiny settings of the other multi-process run
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two "nodes" on two cores


def node_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "train", "node", *args]


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["static", "c10d"])
def test_two_nodes_on_loopback_train_one_version(backend, tiny_model_dir, tmp_path):
    meet = [("nodes", "2"), ("rendezvous", f"127.0.0.1:{free_port()}"), ("rendezvous-backend", backend),
            ("join-timeout", "120")]  # fmt: skip
    service = ServiceProcess(
        "policy",
        ["--registry", str(tmp_path / "registry"), "--model", str(tiny_model_dir),
         *[arg for name, value in meet for arg in (f"--train-{name}", value)]],
        tmp_path / "service.log",
        env=ONE_THREAD,
    )  # fmt: skip
    node_log = tmp_path / "node1.log"
    with open(node_log, "w") as log:
        # Started before the run: it waits at the rendezvous until the service's Train brings node 0.
        node = subprocess.Popen(
            node_command("--node-rank", "1", *[arg for name, value in meet for arg in (f"--{name}", value)]),
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD},
        )  # fmt: skip
    try:
        service.wait_ready()
        with PolicyClient(service.target, timeout_s=300) as client:
            events = list(client.train(rankings=synthetic_rankings(8, 3), **DPO))
            version = events[-1].version
            assert [v.id for v in client.list_versions().versions] == ["policy-0001", "policy-0002"]
        assert node.wait(timeout=60) == 0, node_log.read_text()
    finally:
        node.kill()
        assert service.stop() == 0, service.log()
    metadata = json.loads(version.metadata_json)
    assert metadata["metrics"]["processes"] == 2 and metadata["metrics"]["nodes"] == 2
    assert (tmp_path / "registry" / "versions" / version.id / "adapter_model.safetensors").is_file()
    assert not list((tmp_path / "registry" / "runs").iterdir())
    # The other node's process was one of a group of two. Static ranks put it second; c10d ranks nodes by
    # descriptor (the earlier process first), so there it was global rank 0 and saved what the service committed.
    rank = {"static": 1, "c10d": 0}[backend]
    assert f"training process {rank} of 2 (node {rank} of 2) joined its group" in node_log.read_text()


@pytest.mark.integration
@pytest.mark.parametrize(
    "command, message",
    [
        (["serve", "policy", "--train-nodes", "2"], "rendezvous endpoint '' is not HOST:PORT"),
        (["serve", "policy", "--train-processes", "2", "--train-strategy", "fsdp"], "fsdp needs CUDA"),
        (["train", "node", "--nodes", "2", "--node-rank", "0", "--rendezvous", "h:1"], "node 0 of a run is the policy"),
    ],
    ids=["no-rendezvous", "fsdp-on-cpu", "node-0"],
)
def test_bad_launch_options_stop_the_command_before_anything_starts(command, message, tiny_model_dir, tmp_path):
    registry = tmp_path / "registry"
    serve = ["--registry", str(registry), "--model", str(tiny_model_dir)] if command[0] == "serve" else []
    result = subprocess.run([sys.executable, "-m", "services.cli", *command, *serve], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not registry.exists()  # refused before the service made its registry or loaded a model


@pytest.mark.integration
def test_a_run_whose_other_node_never_comes_fails_after_the_join_timeout(tiny_model_dir, tmp_path):
    service = ServiceProcess(
        "policy",
        ["--registry", str(tmp_path / "registry"), "--model", str(tiny_model_dir), "--train-nodes", "2",
         "--train-rendezvous", f"127.0.0.1:{free_port()}", "--train-join-timeout", "5"],
        tmp_path / "service.log",
    )  # fmt: skip
    try:
        service.wait_ready()
        with PolicyClient(service.target, timeout_s=120) as client:
            with pytest.raises(grpc.RpcError) as error:
                list(client.train(rankings=synthetic_rankings(8, 3), **DPO))
            assert "1/2 clients joined" in error.value.details()
            assert [v.id for v in client.list_versions().versions] == ["policy-0001"]
    finally:
        assert service.stop() == 0, service.log()


def test_the_kubernetes_training_job_is_a_valid_train_node_command_that_meets_the_policy_pod():
    import yaml

    from services.cli import build_parser
    from services.cli.train import launch_spec

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
    rendezvous, template = yaml.safe_load_all((deploy / "policy-training.yaml").read_text())
    (policy,) = [d for d in yaml.safe_load_all((deploy / "policy.yaml").read_text()) if d["kind"] == "Deployment"]
    assert rendezvous["spec"]["clusterIP"] == "None"  # resolves to the policy pod itself
    assert rendezvous["spec"]["selector"] == policy["spec"]["selector"]["matchLabels"]
    ports = {p["name"]: p["containerPort"] for p in policy["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["rendezvous"] == rendezvous["spec"]["ports"][0]["targetPort"]
    job = template["spec"]["jobTemplate"]["spec"]
    assert template["spec"]["suspend"] and job["completionMode"] == "Indexed"
    (container,) = job["template"]["spec"]["containers"]
    for index in range(job["completions"]):  # each pod's command line, as its shell expands it
        line = subprocess.run(
            ["sh", "-c", container["args"][0].replace("exec rlhf-loop", "printf '%s\\n'")],
            env={"JOB_COMPLETION_INDEX": str(index)},
            capture_output=True,
            text=True,
            check=True,
        )
        args = build_parser().parse_args(line.stdout.split())
        launch = launch_spec(args, prefix="", node_rank=args.node_rank)
        launch.validate(cuda=True)
        assert launch.node_rank == index + 1 and launch.nodes == job["completions"] + 1
        assert launch.rendezvous == f"{rendezvous['metadata']['name']}:{rendezvous['spec']['ports'][0]['port']}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    policy_env = {e["name"]: e.get("value") for e in policy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RLHF_LOOP_CACHE"] == policy_env["RLHF_LOOP_CACHE"]  # the base model at the same path on every node
    assert job["template"]["spec"]["volumes"] == policy["spec"]["template"]["spec"]["volumes"]  # the same registry
