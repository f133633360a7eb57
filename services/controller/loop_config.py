"""The loop's configuration (`loop.toml`), checked completely before anything starts."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.controller.gates import Gates
from services.controller.human_evaluation import JUDGES
from services.controller.prompt_selection import STRATEGIES
from services.core.errors import InvalidRequestError
from services.core.loader import load_function
from services.policy.training.config import METHODS, PolicyTrainConfig
from services.reward.train_config import RewardTrainConfig

# "active": every candidate from the active policy; "+previous": half from the policy it replaced
# (the base until one is promoted); "+base": half from the base policy.
CANDIDATE_POLICIES = ("active", "active+previous", "active+base")
# Rankings submitted exactly as the reward model pre-ranked them: "exclude" keeps the model's own
# echo out of its training (they are counted in the record and the report); "keep" trains on them.
UNTOUCHED_PRERANKINGS = ("exclude", "keep")


# Chosen by the loop each round (warm start from the active version; promotion by the gate).
LOOP_SET_REWARD_FIELDS = {"init_version", "promote"}
LOOP_SET_POLICY_FIELDS = {"init_version", "promote", "method", "seed"}


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
    # The first round trains the reward model from nothing: 90 rankings left it at chance on held-out pairs
    # in the demo, 210 did not. 0: the first round is as large as the others.
    first_round_prompts: int = 0
    candidates: int = 4
    pool_factor: int = 2  # candidates are generated for factor x prompts, the most uncertain are kept
    candidate_policies: str = "active+previous"  # who writes the candidates (CANDIDATE_POLICIES)
    selection: str = "uncertainty"
    random_share: float = 0.25
    annotations_per_task: int = 1
    wait_timeout_s: float = 3600.0
    max_new_tokens: int = 32
    simulate: bool = False  # rank with simulated annotators (real Label Studio users)
    simulated_annotators: int = 3
    target_agreement: float = 0.73
    simulated_anchoring: float = 0.0  # chance a simulated annotator submits a shown pre-ranking unchanged
    untouched_prerankings: str = "exclude"  # UNTOUCHED_PRERANKINGS
    gold: str = "services.sim.gold:vader_positivity"  # loaded only to simulate annotators and for the report
    rm_heldout_share: float = 0.25  # of each round's prompts (random_share ones first), held out to judge the new RM
    reward_warm_start: bool = True  # train from the active reward model (on every ranking so far), not the base
    reward_train: dict = field(default_factory=lambda: {"epochs": 2, "learning_rate": 5e-5, "batch_size": 16})
    policy_method: str = "grpo"
    policy_train: dict = field(default_factory=lambda: {"max_steps": 10, "prompts_per_step": 2, "num_generations": 4})
    eval_seed: int = 0
    policy_judge: str = "reward_model"  # or "people": pairwise evaluation tasks decide the promotion
    eval_samples: int = 1  # answers per held-out prompt when a new policy is compared with the active one
    gates: Gates = field(default_factory=Gates)
    seed: int = 0
    metrics_port: int = 0  # 0: no /metrics endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for Prometheus on another host
    service_retry_s: float = 1800.0  # how long an unavailable service is waited for before the run fails

    def round_prompts(self, number: int) -> int:
        """How many prompts iteration `number` sends to the annotators."""
        return self.first_round_prompts if number == 1 and self.first_round_prompts else self.prompts_per_iteration

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
        if not isinstance(self.first_round_prompts, int) or self.first_round_prompts < 0:
            raise InvalidRequestError(
                f"first_round_prompts must be 0 (as prompts_per_iteration) or a positive integer, "
                f"got {self.first_round_prompts!r}"
            )
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
        if self.policy_judge not in JUDGES:
            raise InvalidRequestError(f"unknown policy_judge {self.policy_judge!r}; choose one of {', '.join(JUDGES)}")
        if self.candidate_policies not in CANDIDATE_POLICIES:
            raise InvalidRequestError(
                f"unknown candidate_policies {self.candidate_policies!r}; choose one of {', '.join(CANDIDATE_POLICIES)}"
            )
        if not 0 < self.rm_heldout_share < 1:
            raise InvalidRequestError(f"rm_heldout_share must be in (0, 1), got {self.rm_heldout_share}")
        if not 0.5 <= self.gates.rm_gate_confidence < 1:
            raise InvalidRequestError(
                f"gates.rm_gate_confidence must be in [0.5, 1), got {self.gates.rm_gate_confidence}"
            )
        if not 0 <= self.simulated_anchoring <= 1:
            raise InvalidRequestError(f"simulated_anchoring must be in [0, 1], got {self.simulated_anchoring}")
        if self.untouched_prerankings not in UNTOUCHED_PRERANKINGS:
            raise InvalidRequestError(
                f"unknown untouched_prerankings {self.untouched_prerankings!r}; "
                f"choose one of {', '.join(UNTOUCHED_PRERANKINGS)}"
            )
        if not 0 <= self.random_share <= 1:
            raise InvalidRequestError(f"random_share must be in [0, 1], got {self.random_share}")
        if self.simulate and self.simulated_annotators < self.annotations_per_task:
            raise InvalidRequestError("simulated_annotators must be at least annotations_per_task")
        if not self.simulate and not self.prompts_file:
            raise InvalidRequestError(
                'prompts_file is required: name a JSON-lines file of {"prompt": ...} objects '
                "(only a simulated run, simulate = true, may use the built-in demo prompts)"
            )
        self._validate_reward_train()
        self._validate_policy_train()
        if self.simulate:
            load_function(self.gold, "gold scorer")

    def _validate_reward_train(self) -> None:
        """[reward_train] holds RewardTrainConfig fields; the loop itself sets where training starts."""
        _check_table("reward_train", self.reward_train, RewardTrainConfig, LOOP_SET_REWARD_FIELDS)
        RewardTrainConfig(**self.reward_train).validate()

    def _validate_policy_train(self) -> None:
        """[policy_train] holds PolicyTrainConfig fields; the method is policy_method, the start the loop's."""
        _check_table("policy_train", self.policy_train, PolicyTrainConfig, LOOP_SET_POLICY_FIELDS)
        PolicyTrainConfig(**self.policy_train, method=self.policy_method).validate()


def _check_table(name: str, table: dict, config_class: type, loop_set: set[str]) -> None:
    """Refuse settings of a [table] that its config class does not have, or that the loop sets itself."""
    known = {f.name for f in dataclasses.fields(config_class)} - loop_set
    unknown = set(table) - known
    if unknown:
        raise InvalidRequestError(
            f"unknown [{name}] setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )


def toml_text(settings: dict) -> str:
    """A loop.toml for `settings`: its dict values become [tables]. The values, strings, numbers and
    booleans, are written as JSON, which TOML reads the same for these."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items() if not isinstance(value, dict)]
    for name, table in settings.items():
        if isinstance(table, dict):
            lines += [f"[{name}]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"
