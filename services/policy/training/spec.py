"""What the policy service hands its training worker: one run's inputs, as JSON in the run directory.

The processes on other nodes get the same JSON from the service's node once their group has formed (run_group.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from services.core.rankings import PreferencePair
from services.policy.training.config import PolicyTrainConfig


@dataclass(frozen=True)
class TrainSpec:
    """One run's inputs; the reward token is not among them (it travels in the environment, never on disk)."""

    config: PolicyTrainConfig
    base_model: Path  # the base weights, or the init version's when it is a full fine-tune
    init_adapter: Path | None  # the init version's LoRA adapter to continue, if it has one
    run_dir: Path  # checkpoints, kept across restarts so an identical run resumes
    output_dir: Path  # the registry staging directory the result is saved into
    reward_target: str | None = None  # grpo and rloo score completions there
    reward_tls_ca: Path | None = None
    prompts: tuple[str, ...] = ()  # grpo and rloo
    pairs: tuple[PreferencePair, ...] = ()  # dpo
    strategy: str = "ddp"  # ddp or fsdp, when several processes train

    def write(self, path: Path) -> None:
        """Save as JSON."""
        path.write_text(self.to_json())

    @classmethod
    def read(cls, path: Path) -> TrainSpec:
        """Load what `write` saved."""
        return cls.from_json(path.read_text())

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.as_dict(),
                "base_model": str(self.base_model),
                "init_adapter": _optional_str(self.init_adapter),
                "run_dir": str(self.run_dir),
                "output_dir": str(self.output_dir),
                "reward_target": self.reward_target,
                "reward_tls_ca": _optional_str(self.reward_tls_ca),
                "prompts": list(self.prompts),
                "pairs": [asdict(pair) for pair in self.pairs],
                "strategy": self.strategy,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        data = json.loads(text)
        return cls(
            config=PolicyTrainConfig(**data["config"]),
            base_model=Path(data["base_model"]),
            init_adapter=_optional_path(data["init_adapter"]),
            run_dir=Path(data["run_dir"]),
            output_dir=Path(data["output_dir"]),
            reward_target=data["reward_target"],
            reward_tls_ca=_optional_path(data["reward_tls_ca"]),
            prompts=tuple(data["prompts"]),
            pairs=tuple(PreferencePair(**pair) for pair in data["pairs"]),
            strategy=data["strategy"],
        )


def _optional_str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _optional_path(text: str | None) -> Path | None:
    return Path(text) if text is not None else None
