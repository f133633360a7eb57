"""How the processes of one training run, on however many nodes, agree on its spec before they train.

Only the policy service's node holds the spec file: the other nodes were
started by `rlhf-loop train node`, which knows only where to meet. Once
torchrun has formed the process group, one process that holds the spec sends
it to all, and every process checks that it sees what the spec names (the
registry and the base model must be at the same paths on every node).
"""

from __future__ import annotations

import os
from pathlib import Path

from services.policy.training.spec import TrainSpec


def join_run(state, spec_path: Path | None) -> TrainSpec:
    """This run's spec, the same in every process of `state` (accelerate's PartialState); raise what any lacks."""
    if state.num_processes == 1:
        if spec_path is None:
            raise RuntimeError("a single training process needs its spec file")
        return TrainSpec.read(spec_path)
    import torch
    import torch.distributed as dist

    holders: list[bool] = [False] * state.num_processes
    dist.all_gather_object(holders, spec_path is not None)
    if not any(holders):
        raise RuntimeError("no node of this run has its spec: node 0 must be the policy service (serve policy)")
    source = holders.index(True)
    message = [spec_path.read_text() if state.process_index == source else None]
    dist.broadcast_object_list(message, src=source)
    spec = TrainSpec.from_json(message[0])
    problems: list[list[str]] = [[] for _ in range(state.num_processes)]
    dist.all_gather_object(problems, missing_here(spec, node_rank(), torch.cuda.is_available()))
    found = sorted({problem for rank_problems in problems for problem in rank_problems})
    if found:
        raise RuntimeError("; ".join(found))
    return spec


def missing_here(spec: TrainSpec, node: int, cuda: bool) -> list[str]:
    """What this node lacks to train the spec: paths it cannot see, or a GPU for FSDP."""
    needed = {"the base model": spec.base_model, "the run directory": spec.run_dir}
    if spec.init_adapter is not None:
        needed["the init version"] = spec.init_adapter
    problems = [
        f"node {node} does not see {what} at {path}: every node needs the policy registry and the base model "
        "at the same paths (a shared volume)"
        for what, path in needed.items()
        if not path.exists()
    ]
    if spec.strategy == "fsdp" and not cuda:
        problems.append(f"node {node} has no CUDA device: fsdp needs GPUs on every node")
    return problems


def node_rank() -> int:
    """This process's node in the run (torchrun's GROUP_RANK); 0 outside torchrun."""
    return int(os.environ.get("GROUP_RANK", 0))


def node_count() -> int:
    """How many nodes the run has (torchrun's GROUP_WORLD_SIZE); 1 outside torchrun."""
    return int(os.environ.get("GROUP_WORLD_SIZE", 1))
