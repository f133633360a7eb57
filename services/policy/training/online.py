"""GRPO and RLOO (TRL) with the reward from the reward service."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.policy.remote_reward import RemoteReward
from services.policy.training.callbacks import kl_budget_callback, progress_callback
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.trainable import common_args, last_checkpoint, reference_is_base, trainable_model


def prompt_dataset(prompts: Sequence[str], chat: bool):
    """Conversational rows when the tokenizer has a chat template, so TRL applies it."""
    from datasets import Dataset

    rows = [[{"role": "user", "content": p}] for p in prompts] if chat else list(prompts)
    return Dataset.from_dict({"prompt": rows})


def train_online(
    base_path: Path,
    init_adapter: Path | None,
    prompts: Sequence[str],
    config: PolicyTrainConfig,
    reward: RemoteReward,
    run_dir: Path,
    strategy: str = "ddp",
    reports: bool = True,
):
    """Run GRPO or RLOO to `config.max_steps`, resuming from run_dir's last checkpoint; returns the trainer."""
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    model, tokenizer, peft_config = trainable_model(base_path, init_adapter, config)
    config_class, trainer_class = (GRPOConfig, GRPOTrainer) if config.method == "grpo" else (RLOOConfig, RLOOTrainer)
    args = config_class(
        **common_args(config, run_dir, strategy),
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
    )
    resume = last_checkpoint(run_dir)
    callbacks = [progress_callback(resumed=resume is not None, reports=reports)]
    if config.target_kl:
        callbacks.append(kl_budget_callback(config.target_kl))
    trainer = trainer_class(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=prompt_dataset(prompts, bool(getattr(tokenizer, "chat_template", None))),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    reference_is_base(trainer)
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer
