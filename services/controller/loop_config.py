"""The loop's configuration (`loop.toml`), checked completely before anything starts."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.controller.gates import Gates
from services.controller.prompt_selection import STRATEGIES
from services.core.errors import InvalidRequestError
from services.core.loader import load_function
from services.policy.training.config import METHODS


@dataclass
class LoopConfig:
    state_url: str = "sqlite:///loop-state.db"
    store_url: str = "sqlite:///preferences.db"
    reward_url: str = "127.0.0.1:50051"
    policy_url: str = "127.0.0.1:50052"
    labelstudio_url: str = ""  # empty: the server `rlhf-loop labelstudio up` started
    labelstudio_data_dir: str = ""
    project_title: str = "rlhf-loop rankings"
    template: str = "ranker"
    prompts_file: str = ""  # JSON lines with "prompt"; required unless simulate (then empty: the built-in prompts)
    heldout_prompts: int = 8  # kept out of annotation, used to evaluate policies
    iterations: int = 2
    prompts_per_iteration: int = 8
    candidates: int = 4
    pool_factor: int = 2  # candidates are generated for factor x prompts, the most uncertain are kept
    selection: str = "uncertainty"
    random_share: float = 0.25
    annotations_per_task: int = 1
    wait_timeout_s: float = 3600.0
    max_new_tokens: int = 32
    simulate: bool = False  # rank with simulated annotators (real Label Studio users)
    simulated_annotators: int = 3
    target_agreement: float = 0.73
    gold: str = "services.sim.gold:vader_positivity"  # loaded only to simulate annotators and for the report
    reward_train: dict = field(default_factory=lambda: {"epochs": 2, "learning_rate": 5e-5, "batch_size": 16})
    policy_method: str = "grpo"
    policy_train: dict = field(default_factory=lambda: {"max_steps": 10, "prompts_per_step": 2, "num_generations": 4})
    eval_seed: int = 0
    eval_samples: int = 1  # answers per held-out prompt when a new policy is compared with the active one
    gates: Gates = field(default_factory=Gates)
    seed: int = 0
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for Prometheus on another host
    service_retry_s: float = 1800.0  # how long an unavailable service is waited for before the run fails

    @classmethod
    def from_toml(cls, path: Path) -> LoopConfig:
        raw = tomllib.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise InvalidRequestError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
        gates = raw.pop("gates", {})
        unknown_gates = set(gates) - {f.name for f in dataclasses.fields(Gates)}
        if unknown_gates:
            raise InvalidRequestError(f"unknown gate(s): {', '.join(sorted(unknown_gates))}")
        return cls(**raw, gates=Gates(**gates))

    def validate(self) -> None:
        """Everything a run needs, checked up front: a bad setting never surfaces mid-iteration."""
        counts = {
            "iterations": self.iterations,
            "prompts_per_iteration": self.prompts_per_iteration,
            "pool_factor": self.pool_factor,
            "annotations_per_task": self.annotations_per_task,
            "simulated_annotators": self.simulated_annotators,
            "heldout_prompts": self.heldout_prompts,
            "max_new_tokens": self.max_new_tokens,
            "eval_samples": self.eval_samples,
        }
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.candidates, int) or self.candidates < 2:
            raise InvalidRequestError(f"candidates must be at least 2, got {self.candidates!r}")
        if self.policy_method not in METHODS:
            raise InvalidRequestError(
                f"unknown policy_method {self.policy_method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.selection not in STRATEGIES:
            raise InvalidRequestError(f"unknown selection {self.selection!r}; choose one of {', '.join(STRATEGIES)}")
        if self.template not in ("ranker", "ranker-buckets", "pairwise"):
            raise InvalidRequestError(f"unknown template {self.template!r}")
        if not 0 <= self.random_share <= 1:
            raise InvalidRequestError(f"random_share must be in [0, 1], got {self.random_share}")
        if self.simulate and self.simulated_annotators < self.annotations_per_task:
            raise InvalidRequestError("simulated_annotators must be at least annotations_per_task")
        if not self.simulate and not self.prompts_file:
            raise InvalidRequestError(
                'prompts_file is required: name a JSON-lines file of {"prompt": ...} objects '
                "(only a simulated run, simulate = true, may use the built-in demo prompts)"
            )
        if self.simulate:
            load_function(self.gold, "gold scorer")
