"""`rlhf-loop train node`: run one more node's processes of the policy service's multi-node training run.

The policy service is node 0 and holds the run; this command only execs
torchrun with this machine's node rank, and its processes get the run's
spec from node 0 once they have met (services/policy/training/run_group.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.policy.training.launch import LaunchSpec


def register(commands: argparse._SubParsersAction) -> None:
    """Add `train node`."""
    train = commands.add_parser("train", help="policy training across machines").add_subparsers(
        dest="train_command", required=True
    )
    node = train.add_parser("node", help="join the policy service's next multi-node training run as node 1..N-1")
    node.add_argument(
        "--node-rank",
        type=int,
        required=True,
        help="this machine's node, 1..N-1 (the service is 0; c10d ranks nodes itself)",
    )
    add_launch_options(node, prefix="")
    node.set_defaults(func=_node)


def add_launch_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The options that say where a run's processes run and meet; `serve policy` adds them as --train-*."""
    parser.add_argument(
        f"--{prefix}processes", type=int, default=1, help="training processes per node, e.g. one per GPU (default 1)"
    )
    parser.add_argument(f"--{prefix}nodes", type=int, default=1, help="machines per training run (default 1)")
    parser.add_argument(f"--{prefix}rendezvous", default="", help="HOST:PORT where the nodes meet: node 0's address")
    parser.add_argument(
        f"--{prefix}rendezvous-backend",
        choices=["static", "c10d"],
        default="static",
        help="static: fixed node ranks, node 0 hosts the store (default); c10d: torch's dynamic rendezvous",
    )
    parser.add_argument(
        f"--{prefix}join-timeout", type=int, default=600, help="seconds a node waits for the others (default 600)"
    )


def launch_spec(args: argparse.Namespace, prefix: str, node_rank: int = 0, strategy: str = "ddp") -> LaunchSpec:
    """The LaunchSpec the options of `add_launch_options(prefix)` give."""
    from services.policy.training.launch import LaunchSpec

    option = prefix.replace("-", "_")
    return LaunchSpec(
        processes_per_node=getattr(args, f"{option}processes"),
        nodes=getattr(args, f"{option}nodes"),
        node_rank=node_rank,
        rendezvous=getattr(args, f"{option}rendezvous"),
        rendezvous_backend=getattr(args, f"{option}rendezvous_backend"),
        strategy=strategy,
        join_timeout_s=getattr(args, f"{option}join_timeout"),
    )


def _node(args: argparse.Namespace) -> int:
    import torch

    from services.core.errors import InvalidRequestError

    launch = launch_spec(args, prefix="", node_rank=args.node_rank)
    launch.validate(cuda=torch.cuda.is_available())
    if launch.node_rank == 0 or launch.nodes < 2:
        raise InvalidRequestError(
            "node 0 of a run is the policy service (serve policy --train-nodes N); this command runs nodes 1..N-1"
        )
    command = [sys.executable, "-m", *launch.worker_command([])]
    sys.stdout.flush()
    os.execv(sys.executable, command)  # torchrun in this process's place: signals reach it, its exit code is ours
