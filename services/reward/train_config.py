"""Hyper-parameters of a reward-model training run, validated before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from services.core.config_checks import check_config
from services.core.errors import InvalidRequestError

# Pairwise Bradley-Terry on every strict pair (TRL), or listwise Plackett-Luce on whole rankings.
LOSSES = ("bradley_terry", "plackett_luce")


@dataclass
class RewardTrainConfig:
    epochs: int = 2
    learning_rate: float = 5e-5
    batch_size: int = 32  # preference pairs per optimiser step (whole prompt groups)
    heldout_fraction: float = 0.2
    seed: int = 0
    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: float = 32.0
    margin_per_rank: float = 0.0  # Bradley-Terry margin = margin_per_rank * (rank gap - 1)
    loss: str = "bradley_terry"  # one of LOSSES
    ensemble_size: int = 1  # reward heads on one backbone, each trained on its own bootstrap of the data
    max_length: int = 512
    init_version: str = ""  # empty: the registry's base version
    promote: bool = False
    min_train_pairs: int = 4

    def validate(self) -> None:
        """Raise InvalidRequestError naming the first field out of range, or the loss that cannot be used."""
        check_config(
            self,
            {
                "epochs": 1 <= self.epochs <= 100,
                "learning_rate": 0 < self.learning_rate <= 1,
                "batch_size": 1 <= self.batch_size <= 4096,
                "heldout_fraction": 0 < self.heldout_fraction < 1,
                "lora_r": 1 <= self.lora_r <= 1024,
                "lora_alpha": self.lora_alpha > 0,
                "margin_per_rank": 0 <= self.margin_per_rank <= 100,
                "max_length": 8 <= self.max_length <= 32768,
                "ensemble_size": 1 <= self.ensemble_size <= 16,
                "seed": 0 <= self.seed < 2**32,
            },
        )
        if self.loss not in LOSSES:
            raise InvalidRequestError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.loss == "plackett_luce" and self.margin_per_rank > 0:
            # A margin shifts one pair's score difference; a listwise loss has no pair to shift.
            raise InvalidRequestError(
                f"margin_per_rank={self.margin_per_rank} needs the pairwise loss bradley_terry; "
                "set it to 0 to train with plackett_luce"
            )

    def as_dict(self) -> dict:
        return asdict(self)
