"""DPO (TRL) straight from the human preference pairs: no reward model needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.core.rankings import PreferencePair
from services.policy.training.callbacks import progress_callback
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.trainable import common_args, last_checkpoint, reference_is_base, trainable_model


def pair_dataset(pairs: Sequence[PreferencePair], chat: bool):
    """Conversational rows when the tokenizer has a chat template; plain text otherwise, each answer after a space."""
    from datasets import Dataset

    if chat:
        return Dataset.from_dict(
            {
                "prompt": [[{"role": "user", "content": p.prompt}] for p in pairs],
                "chosen": [[{"role": "assistant", "content": p.chosen}] for p in pairs],
                "rejected": [[{"role": "assistant", "content": p.rejected}] for p in pairs],
            }
        )
    return Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [" " + p.chosen for p in pairs],
            "rejected": [" " + p.rejected for p in pairs],
        }
    )


def train_dpo(
    base_path: Path,
    init_adapter: Path | None,
    pairs: Sequence[PreferencePair],
    config: PolicyTrainConfig,
    run_dir: Path,
    strategy: str = "ddp",
    reports: bool = True,
):
    """DPO over the pairs for `epochs` (at most `max_steps` steps), resuming from a checkpoint."""
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    model, tokenizer, peft_config = trainable_model(base_path, init_adapter, config)
    args = DPOConfig(
        **{**common_args(config, run_dir, strategy), "max_steps": -1},
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.prompts_per_step,
        max_length=1024,
    )
    dataset = pair_dataset(pairs, bool(getattr(tokenizer, "chat_template", None)))
    steps_per_epoch = -(-len(dataset) // config.prompts_per_step)
    args.max_steps = min(config.max_steps, steps_per_epoch * config.epochs)
    resume = last_checkpoint(run_dir)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[progress_callback(resumed=resume is not None, reports=reports)],
    )
    reference_is_base(trainer)
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer
