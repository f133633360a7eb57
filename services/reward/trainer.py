"""Train a reward model from rankings with TRL's RewardTrainer (pairwise Bradley-Terry).

What we add to TRL: pairs come from rankings with ties, the pairs of one
prompt always share a batch (InstructGPT), the held-out split is by prompt,
progress goes to a callback, a stop flag ends training cleanly, and LoRA
adapters are merged so every version is a plain checkpoint.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from services.core.errors import CancelledError, PreconditionError
from services.core.rankings import (
    PreferencePair,
    PromptSplit,
    Ranking,
    group_pairs_by_prompt,
    split_by_prompt,
)
from services.core.win_rate import win_rate
from services.models.loading import load_reward_model
from services.reward.encoding import encode_pair
from services.reward.scorer import RewardScorer, ScoreItem
from services.reward.train_config import RewardTrainConfig

log = logging.getLogger(__name__)

# LoRA targets and the head to train fully, by architecture: attention projections (Llama's q/k/v/o,
# BERT's query/value) as adapters; the freshly initialised scalar head is trained in full.
LORA_TARGETS = {
    "llama": (["q_proj", "k_proj", "v_proj", "o_proj"], ["score"]),
    "bert": (["query", "value"], ["classifier"]),
}


class NotEnoughDataError(PreconditionError):
    """Too few prompts or pairs to train and evaluate."""


class TrainingCancelledError(CancelledError):
    """The caller asked training to stop; nothing was written."""


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    accuracy: float


@dataclass(frozen=True)
class TrainOutcome:
    heldout_accuracy: float
    heldout_pairs: int
    heldout_prompts: int
    train_pairs: int
    train_prompts: int
    steps: int
    final_loss: float


def prepare_split(rankings: Sequence[Ranking], config: RewardTrainConfig) -> PromptSplit:
    """Pairs split by prompt; NotEnoughDataError (with the numbers) when training would be meaningless."""
    groups = group_pairs_by_prompt(rankings)
    n_pairs = sum(len(pairs) for pairs in groups.values())
    if len(groups) < 2 or n_pairs < config.min_train_pairs + 1:
        raise NotEnoughDataError(
            f"need at least 2 prompts with a strict preference and {config.min_train_pairs + 1} pairs; "
            f"got {len(rankings)} rankings -> {len(groups)} prompts, {n_pairs} pairs"
        )
    split = split_by_prompt(groups, config.heldout_fraction, config.seed)
    if len(split.train) < config.min_train_pairs:
        raise NotEnoughDataError(
            f"need at least {config.min_train_pairs} training pairs after holding out "
            f"{split.heldout_prompts} prompts; got {len(split.train)}"
        )
    return split


class PromptGroupBatchSampler(Sampler[list[int]]):
    """Batches of whole prompt groups (up to `max_pairs` pairs, or one larger group alone).

    Groups are packed once, so the number of batches is fixed for the trainer's
    step count; the order of batches is reshuffled every epoch.
    """

    def __init__(self, groups: Sequence[Sequence[int]], max_pairs: int, seed: int):
        order = list(range(len(groups)))
        random.Random(seed).shuffle(order)
        self.batches: list[list[int]] = []
        current: list[int] = []
        for g in order:
            if current and len(current) + len(groups[g]) > max_pairs:
                self.batches.append(current)
                current = []
            current.extend(groups[g])
        if current:
            self.batches.append(current)
        self._rng = random.Random(seed + 1)

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(self.batches)
        self._rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return len(self.batches)


def _pair_rows(pairs: Sequence[PreferencePair], tokenizer, config: RewardTrainConfig) -> dict[str, list]:
    rows: dict[str, list] = {"chosen_ids": [], "rejected_ids": []}
    if config.margin_per_rank > 0:
        rows["margin"] = []
    for p in pairs:
        rows["chosen_ids"].append(encode_pair(tokenizer, p.prompt, p.chosen, config.max_length))
        rows["rejected_ids"].append(encode_pair(tokenizer, p.prompt, p.rejected, config.max_length))
        if "margin" in rows:
            rows["margin"].append(config.margin_per_rank * (p.rank_gap - 1))
    return rows


def _prompt_groups(pairs: Sequence[PreferencePair]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for index, p in enumerate(pairs):
        groups.setdefault(p.prompt, []).append(index)
    return list(groups.values())


def pairwise_accuracy(scorer: RewardScorer, pairs: Sequence[PreferencePair]) -> float:
    """Share of pairs where the chosen response scores higher (ties count half)."""
    if not pairs:
        return float("nan")
    items = [ScoreItem(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)]
    scores = scorer.score(items)
    return win_rate(scores[::2], scores[1::2])


def train_reward_model(
    init_path: Path,
    split: PromptSplit,
    config: RewardTrainConfig,
    output_dir: Path,
    *,
    on_progress: Callable[[TrainProgress], None] = lambda _: None,
    should_stop: Callable[[], bool] = lambda: False,
    trust_remote_code: bool = False,
) -> TrainOutcome:
    """Train from `init_path` on split.train, evaluate on split.heldout, save into `output_dir`."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback, set_seed
    from trl import RewardConfig, RewardTrainer

    set_seed(config.seed)
    model, tokenizer = load_reward_model(init_path, trust_remote_code=trust_remote_code)
    dataset = Dataset.from_dict(_pair_rows(split.train, tokenizer, config))
    groups = _prompt_groups(split.train)

    peft_config = None
    if config.use_lora:
        from peft import LoraConfig

        targets, head = LORA_TARGETS.get(model.config.model_type, (None, None))
        peft_config = LoraConfig(
            task_type="SEQ_CLS",
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules=targets,
            modules_to_save=head,
        )

    class _Progress(TrainerCallback):
        """Forward TRL's logs to the caller and honour the stop flag between steps."""

        cancelled = False
        last_loss = float("nan")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
                on_progress(
                    TrainProgress(
                        step=state.global_step,
                        total_steps=state.max_steps,
                        epoch=float(logs.get("epoch", state.epoch or 0.0)),
                        loss=self.last_loss,
                        accuracy=float(logs.get("accuracy", float("nan"))),
                    )
                )

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop():
                _Progress.cancelled = True
                control.should_training_stop = True

    class _GroupedRewardTrainer(RewardTrainer):
        def get_train_dataloader(self) -> DataLoader:
            sampler = PromptGroupBatchSampler(groups, self.args.per_device_train_batch_size, self.args.seed)
            loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator)
            return self.accelerator.prepare(loader)

    with tempfile.TemporaryDirectory(prefix="rlhf-reward-train-") as scratch:
        args = RewardConfig(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            learning_rate=config.learning_rate,
            per_device_train_batch_size=config.batch_size,
            seed=config.seed,
            bf16=False,
            gradient_checkpointing=False,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            max_length=None,  # encode_pair already truncates; filtering would break the prompt groups
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,
        )
        progress = _Progress()
        trainer = _GroupedRewardTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[progress],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes to our callback, not stdout
        result = trainer.train()
        if progress.cancelled:
            raise TrainingCancelledError(f"training stopped at step {trainer.state.global_step}")
        trained = trainer.model
        if config.use_lora:
            trained = trained.merge_and_unload()
    trained.eval()
    scorer = RewardScorer(trained, tokenizer, version="candidate", max_length=config.max_length)
    heldout_accuracy = pairwise_accuracy(scorer, split.heldout)
    trained.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return TrainOutcome(
        heldout_accuracy=heldout_accuracy,
        heldout_pairs=len(split.heldout),
        heldout_prompts=split.heldout_prompts,
        train_pairs=len(split.train),
        train_prompts=split.train_prompts,
        steps=trainer.state.global_step,
        final_loss=float(result.training_loss),
    )
