"""How a policy training run is launched: its processes, on how many nodes, where they meet, DDP or FSDP.

The policy service is node 0 of every run. On more nodes, each other machine
runs `rlhf-loop train node`, which execs the same torchrun with its own node
rank; the run's spec reaches those processes once they have formed the group
(run_group.py), so all they need to know is where to meet.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.errors import InvalidRequestError, PreconditionError

WORKER_MODULE = "services.policy.training.worker"
RENDEZVOUS_BACKENDS = ("static", "c10d")
STRATEGIES = ("ddp", "fsdp")
# Every node of a c10d rendezvous names the same run; one run at a time meets at an endpoint.
RENDEZVOUS_ID = "rlhf-loop-policy-training"


@dataclass(frozen=True)
class LaunchSpec:
    processes_per_node: int = 1
    nodes: int = 1
    node_rank: int = 0  # the policy service is node 0, `train node` 1..nodes-1 (static; c10d ranks nodes itself)
    rendezvous: str = ""  # HOST:PORT of node 0 (static) or of the c10d store; needed when nodes > 1
    rendezvous_backend: str = "static"
    strategy: str = "ddp"  # how the processes share the model; node 0 hands it to every node with the spec
    join_timeout_s: int = 600  # how long a node waits for the others to arrive

    @property
    def world_size(self) -> int:
        return self.processes_per_node * self.nodes

    def validate(self, cuda: bool) -> None:
        """Raise InvalidRequestError (or PreconditionError for what this machine lacks) naming the first problem."""
        if self.rendezvous_backend not in RENDEZVOUS_BACKENDS:
            raise InvalidRequestError(
                f"unknown rendezvous backend {self.rendezvous_backend!r}; choose {' or '.join(RENDEZVOUS_BACKENDS)}"
            )
        if self.strategy not in STRATEGIES:
            raise InvalidRequestError(f"unknown training strategy {self.strategy!r}; choose {' or '.join(STRATEGIES)}")
        if not 1 <= self.processes_per_node <= 1024:
            raise InvalidRequestError(f"processes per node must be in [1, 1024], got {self.processes_per_node}")
        if not 1 <= self.nodes <= 1024:
            raise InvalidRequestError(f"nodes must be in [1, 1024], got {self.nodes}")
        if not 0 <= self.node_rank < self.nodes:
            raise InvalidRequestError(
                f"node rank {self.node_rank} is not one of the {self.nodes} nodes 0..{self.nodes - 1}"
            )
        if not 1 <= self.join_timeout_s <= 86_400:
            raise InvalidRequestError(f"join timeout must be in [1, 86400] seconds, got {self.join_timeout_s}")
        if self.nodes > 1:
            check_endpoint(self.rendezvous)
        if self.strategy == "fsdp":
            if self.world_size < 2:
                raise InvalidRequestError("fsdp shards the model across processes: it needs at least 2 in all")
            if not cuda:
                # accelerate turns FSDP on only for GPU-like process groups: on CPU (gloo) it would train unsharded.
                raise PreconditionError("fsdp needs CUDA: accelerate shards only on GPUs, never on a CPU (gloo) group")

    def run_identity(self) -> list:
        """What a run's checkpoints depend on: its world size (data shards, per-rank RNG states) and strategy.

        Not where the nodes meet: a restarted identical run resumes even if node 0 came back at another address.
        """
        return [self.world_size, self.strategy]

    def worker_command(self, worker_args: list[str]) -> list[str]:
        """The module to run with `python -m`, and its arguments: the worker alone, or torchrun around it."""
        if self.world_size == 1:
            return [WORKER_MODULE, *worker_args]
        return ["torch.distributed.run", *self._torchrun_options(), "-m", WORKER_MODULE, *worker_args]

    def _torchrun_options(self) -> list[str]:
        per_node = ["--nproc-per-node", str(self.processes_per_node)]
        if self.nodes == 1:
            return ["--standalone", *per_node]  # a free local port: several services may share a machine
        timeout = self.join_timeout_s
        if self.rendezvous_backend == "static":  # node 0 hosts the store; the others wait up to `timeout` for it
            backend = ["--node-rank", str(self.node_rank), "--rdzv-conf", f"timeout={timeout}"]
        else:  # c10d ranks the nodes itself; it waits `join_timeout` for them, `read_timeout` for its store
            backend = ["--rdzv-conf", f"join_timeout={timeout},read_timeout={timeout}"]
        return [
            "--nnodes", str(self.nodes), *per_node,
            "--rdzv-backend", self.rendezvous_backend,
            "--rdzv-endpoint", self.rendezvous,
            "--rdzv-id", RENDEZVOUS_ID,
            *backend,
        ]  # fmt: skip


def check_endpoint(endpoint: str) -> None:
    """HOST:PORT with the port in 1..65535 (an IPv6 host goes in brackets, as torchrun reads it)."""
    host, _, port = endpoint.rpartition(":")
    if not host or any(c.isspace() for c in host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidRequestError(
            f"rendezvous endpoint {endpoint!r} is not HOST:PORT: training on more than one node needs "
            "the address at which every node reaches node 0 (the policy service)"
        )
