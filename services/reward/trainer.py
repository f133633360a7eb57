"""Train a reward model from rankings with TRL's RewardTrainer.

Two losses, by `config.loss`: pairwise Bradley-Terry (TRL's own) on every
strict pair of a ranking, or listwise Plackett-Luce on whole rankings
(services/reward/plackett_luce.py). What we add to TRL: pairs come from
rankings with ties, the data of one prompt always shares a batch
(InstructGPT), the held-out split is by prompt, progress goes to a callback,
a stop flag ends training cleanly, and LoRA adapters are merged so every
version is a plain checkpoint. Both losses share all of that and are
evaluated alike, by pairwise accuracy on the held-out pairs.
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

from services.core.errors import CancelledError, InvalidRequestError, PreconditionError
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
from services.reward.ensemble import OnlineBagging
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


def prepare_split(
    rankings: Sequence[Ranking], config: RewardTrainConfig, heldout_rankings: Sequence[Ranking] = ()
) -> PromptSplit:
    """Pairs split by prompt; NotEnoughDataError (with the numbers) when training would be meaningless.

    With `heldout_rankings` the caller chose the held-out comparisons: every
    ranking in `rankings` is trained on, and a held-out prompt may not appear
    among them (it would leak into training).
    """
    if heldout_rankings:
        return _caller_split(rankings, heldout_rankings, config)
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
    heldout = {p.prompt for p in split.heldout}
    split.train_rankings = [r for r in rankings if r.prompt not in heldout]
    return split


def _caller_split(
    rankings: Sequence[Ranking], heldout_rankings: Sequence[Ranking], config: RewardTrainConfig
) -> PromptSplit:
    heldout_groups = group_pairs_by_prompt(heldout_rankings)
    leaked = sorted({r.prompt for r in rankings} & {r.prompt for r in heldout_rankings})
    if leaked:
        raise InvalidRequestError(
            f"{len(leaked)} held-out prompt(s) also appear in the training rankings, e.g. {leaked[0][:80]!r}"
        )
    groups = group_pairs_by_prompt(rankings)
    train = [p for pairs in groups.values() for p in pairs]
    heldout = [p for pairs in heldout_groups.values() for p in pairs]
    if len(train) < config.min_train_pairs or not heldout:
        raise NotEnoughDataError(
            f"need at least {config.min_train_pairs} training pairs and one held-out pair; "
            f"got {len(train)} training pairs ({len(rankings)} rankings) and {len(heldout)} held-out pairs "
            f"({len(heldout_rankings)} rankings)"
        )
    return PromptSplit(train, heldout, len(groups), len(heldout_groups), list(rankings))


class PromptGroupBatchSampler(Sampler[list[int]]):
    """Batches of whole prompt groups (up to `max_pairs` pairs, or one larger group alone).

    An item counts as one pair unless `pair_counts` says otherwise: a whole
    ranking counts its strict pairs, so both losses take a comparable number
    of steps on the same data. Groups are packed once, so the number of
    batches is fixed for the trainer's step count; the order of batches is
    reshuffled every epoch.
    """

    def __init__(
        self, groups: Sequence[Sequence[int]], max_pairs: int, seed: int, pair_counts: Sequence[int] | None = None
    ):
        order = list(range(len(groups)))
        random.Random(seed).shuffle(order)
        self.batches: list[list[int]] = []
        current: list[int] = []
        current_pairs = 0
        for g in order:
            group_pairs = len(groups[g]) if pair_counts is None else sum(pair_counts[i] for i in groups[g])
            if current and current_pairs + group_pairs > max_pairs:
                self.batches.append(current)
                current, current_pairs = [], 0
            current.extend(groups[g])
            current_pairs += group_pairs
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


def _prompt_groups(items: Sequence[PreferencePair | Ranking]) -> list[list[int]]:
    """Indices of `items` by prompt, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.prompt, []).append(index)
    return list(groups.values())


def _listwise_rankings(split: PromptSplit) -> list[Ranking]:
    """The training rankings with a strict preference, in the prompt order of split.train.

    A ranking whose candidates all tie gives the pairwise loss nothing, so it is
    left out and both losses train on the same comparisons. The shared prompt
    order makes the batch sampler pack the same prompts together for both.
    """
    from services.reward.plackett_luce import strict_pairs

    position: dict[str, int] = {}
    for pair in split.train:
        position.setdefault(pair.prompt, len(position))
    return sorted((r for r in split.train_rankings if strict_pairs(r.tiers)), key=lambda r: position[r.prompt])


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
    """Train from `init_path` with `config.loss` on split.train, evaluate on split.heldout, save into `output_dir`."""
    from transformers import PrinterCallback, set_seed

    set_seed(config.seed)  # before loading: the reward head is initialised at random
    model, tokenizer = load_reward_model(init_path, members=config.ensemble_size, trust_remote_code=trust_remote_code)
    build_trainer = _TRAINERS[config.loss]
    progress = _progress_callback(on_progress, should_stop)
    with tempfile.TemporaryDirectory(prefix="rlhf-reward-train-") as scratch:
        # TRL's RewardTrainer refuses a config of more than one label. An ensemble's heads are the
        # outputs of one linear layer that our losses read column by column, so the config says 1
        # while the trainer is built and the true count again before anything else reads it.
        model.config.num_labels = 1
        try:
            trainer = build_trainer(
                split,
                config,
                model=model,
                args=_training_args(config, scratch),
                processing_class=tokenizer,
                peft_config=_lora_config(model, config),
                callbacks=[progress],
            )
        finally:
            model.config.num_labels = config.ensemble_size
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


def _pairwise_trainer(split: PromptSplit, config: RewardTrainConfig, **trainer_args):
    """TRL's RewardTrainer (Bradley-Terry) on the pairs of split.train, whole prompt groups per batch."""
    from datasets import Dataset
    from trl import RewardTrainer

    groups = _prompt_groups(split.train)

    bagging = OnlineBagging(config.seed)

    class _GroupedRewardTrainer(RewardTrainer):
        def get_train_dataloader(self) -> DataLoader:
            sampler = PromptGroupBatchSampler(groups, self.args.per_device_train_batch_size, self.args.seed)
            loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator)
            return self.accelerator.prepare(loader)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if config.ensemble_size == 1:  # TRL's own loss and metrics
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # An ensemble: Bradley-Terry for every head, each head weighting the pairs by its own bootstrap.
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            chosen, rejected = torch.chunk(outputs.logits, chunks=2)  # (pairs, heads) each
            margin = inputs["margin"][:, None] if "margin" in inputs else 0.0
            loss = bagging.loss(-torch.nn.functional.logsigmoid(chosen - rejected - margin), outputs.logits)
            with torch.no_grad():
                mode = "train" if model.training else "eval"
                accuracy = (chosen.mean(dim=1) > rejected.mean(dim=1)).float().mean()
                self._metrics[mode]["accuracy"].append(accuracy.item())
            return (loss, outputs) if return_outputs else loss

    dataset = Dataset.from_dict(_pair_rows(split.train, trainer_args["processing_class"], config))
    return _GroupedRewardTrainer(train_dataset=dataset, **trainer_args)


def _listwise_trainer(split: PromptSplit, config: RewardTrainConfig, **trainer_args):
    """Plackett-Luce on the whole training rankings, whole prompt groups of up to batch_size pairs per batch."""
    from datasets import Dataset

    from services.reward.plackett_luce import PlackettLuceTrainer, RankingCollator, encode_rankings, strict_pairs

    tokenizer = trainer_args["processing_class"]
    rankings = _listwise_rankings(split)
    sampler = PromptGroupBatchSampler(
        _prompt_groups(rankings), config.batch_size, config.seed, [strict_pairs(r.tiers) for r in rankings]
    )
    return PlackettLuceTrainer(
        bagging=OnlineBagging(config.seed),
        train_dataset=Dataset.from_dict(encode_rankings(rankings, tokenizer, config.max_length)),
        data_collator=RankingCollator(tokenizer.pad_token_id),
        batch_sampler=sampler,
        **trainer_args,
    )


_TRAINERS = {"bradley_terry": _pairwise_trainer, "plackett_luce": _listwise_trainer}


def _training_args(config: RewardTrainConfig, output_dir: str):
    from trl import RewardConfig

    return RewardConfig(
        output_dir=output_dir,
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


def _lora_config(model, config: RewardTrainConfig):
    """The LoRA adapters of `config.use_lora` for this architecture; None trains the whole model."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    targets, head = LORA_TARGETS.get(model.config.model_type, (None, None))
    return LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=targets,
        modules_to_save=head,
    )


def _progress_callback(on_progress: Callable[[TrainProgress], None], should_stop: Callable[[], bool]):
    """A TrainerCallback that forwards the trainer's logs to `on_progress` and honours `should_stop` between steps."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        cancelled = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                on_progress(
                    TrainProgress(
                        step=state.global_step,
                        total_steps=state.max_steps,
                        epoch=float(logs.get("epoch", state.epoch or 0.0)),
                        loss=float(logs["loss"]),
                        accuracy=float(logs.get("accuracy", float("nan"))),
                    )
                )

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop():
                self.cancelled = True
                control.should_training_stop = True

    return _Progress()
