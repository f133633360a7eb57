"""Hyper-parameters of a policy training run (GRPO, RLOO or DPO), validated before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from services.core.config_checks import check_config
from services.core.errors import InvalidRequestError

METHODS = ("grpo", "rloo", "dpo")


@dataclass
class PolicyTrainConfig:
    method: str = "grpo"
    max_steps: int = 20
    learning_rate: float = 3e-4
    prompts_per_step: int = 4
    num_generations: int = 4  # completions per prompt (grpo/rloo); GRPO's group size
    max_new_tokens: int = 48
    temperature: float = 1.0
    beta: float = 0.02  # KL coefficient against the reference: the base model (LoRA runs) with the adapter off
    target_kl: float = 0.0  # grpo/rloo: stop once the KL to the reference (nats per completion) reaches it; 0: never
    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: float = 32.0
    seed: int = 0
    save_steps: int = 5  # checkpoint interval; a killed run resumes from the last one
    init_version: str = ""  # empty: start from the base model
    promote: bool = False
    epochs: int = 1  # dpo: passes over the pairs, capped by max_steps
    conservative_lambda: float = 0.0  # grpo/rloo: reward = ensemble mean - lambda * spread; 0: the mean

    def validate(self) -> None:
        """Raise InvalidRequestError naming the first field out of range."""
        if self.method not in METHODS:
            raise InvalidRequestError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_config(
            self,
            {
                "max_steps": 1 <= self.max_steps <= 100_000,
                "learning_rate": 0 < self.learning_rate <= 1,
                "prompts_per_step": 1 <= self.prompts_per_step <= 1024,
                "num_generations": 2 <= self.num_generations <= 64,
                "max_new_tokens": 1 <= self.max_new_tokens <= 4096,
                "temperature": 0 < self.temperature <= 10,
                "beta": 0 <= self.beta <= 100,
                "lora_r": 1 <= self.lora_r <= 1024,
                "lora_alpha": self.lora_alpha > 0,
                "seed": 0 <= self.seed < 2**32,
                "save_steps": 1 <= self.save_steps <= 100_000,
                "epochs": 1 <= self.epochs <= 100,
                "target_kl": self.target_kl >= 0,
                "conservative_lambda": 0 <= self.conservative_lambda <= 100,
            },
        )
        if self.target_kl and (self.method == "dpo" or self.beta == 0):
            # DPO logs no KL, and with beta 0 the trainers compute none: the budget could never be checked.
            raise InvalidRequestError("target_kl needs grpo or rloo with beta > 0")
        if self.conservative_lambda and self.method == "dpo":
            raise InvalidRequestError("conservative_lambda needs grpo or rloo: DPO trains on pairs, not on rewards")

    def as_dict(self) -> dict:
        return asdict(self)
