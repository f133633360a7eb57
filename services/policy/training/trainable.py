"""What GRPO, RLOO and DPO runs share: the trainable model and its LoRA, common TRL arguments, checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from services.policy.policy_model import load_causal_lm, pick_device
from services.policy.training.config import PolicyTrainConfig

LORA_TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def trainable_model(base_path: Path, init_adapter: Path | None, config: PolicyTrainConfig):
    """(model, tokenizer, peft_config): the base with a new LoRA, or with the init version's adapter trainable."""
    model, tokenizer = load_causal_lm(base_path, pick_device())
    tokenizer.padding_side = "left"
    if init_adapter is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True), tokenizer, None
    if not config.use_lora:
        return model, tokenizer, None
    from peft import LoraConfig

    peft_config = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=LORA_TARGETS.get(model.config.model_type),
    )
    return model, tokenizer, peft_config


def common_args(config: PolicyTrainConfig, run_dir: Path, strategy: str = "ddp") -> dict:
    """TRL config fields every method sets the same way (CPU-safe precision, checkpoints, quiet logs, FSDP)."""
    # FSDP2 wraps each decoder layer (the model's _no_split_modules); checkpoints keep the full weights on rank 0.
    fsdp = (
        {"fsdp": True, "fsdp_config": {"version": 2, "state_dict_type": "FULL_STATE_DICT"}}
        if strategy == "fsdp"
        else {}
    )
    return {
        **fsdp,
        "output_dir": str(run_dir),
        "learning_rate": config.learning_rate,
        "max_steps": config.max_steps,
        "seed": config.seed,
        "beta": config.beta,
        "bf16": torch.cuda.is_available(),
        "gradient_checkpointing": False,
        "use_cpu": not torch.cuda.is_available(),
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
    }


def reference_is_base(trainer) -> None:
    """Make the trainer's reference the base model (adapter off), the one Evaluate and the KL gate measure against.

    Continuing an init version's adapter, TRL freezes a copy of it as a second
    adapter named "ref" and uses that as the reference: each iteration's KL
    penalty would then restart at zero while the policy drifts ever further
    from the base, and a KL budget could never hold across iterations.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


# The Trainer writes this file last, after weights, optimizer and RNG state: a checkpoint without it was
# being written when its run was killed, and resuming from it fails ("Can't find a valid checkpoint").
COMPLETE_MARKER = "trainer_state.json"


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint a stopped or killed run left in `run_dir`: where the next identical run resumes.

    Half-written checkpoints (no trainer state) are removed, so the resumed run writes them again from scratch.
    """
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    while checkpoints and not (checkpoints[-1] / COMPLETE_MARKER).is_file():
        shutil.rmtree(checkpoints.pop(), ignore_errors=True)  # every DDP rank may tidy the same one
    return checkpoints[-1] if checkpoints else None
