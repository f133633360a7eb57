"""Listwise Plackett-Luce loss with ties, and the pieces that train a reward model with it.

Bradley-Terry sees a ranking of K candidates as C(K,2) separate pairs.
Plackett-Luce sees it as one event: the best candidate is picked from all of
them, the next from those left, and so on to the end. The training pieces here
mirror the pairwise path in trainer.py: whole prompt groups per batch, the same
model, and TRL's RewardTrainer for everything except the data and the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler
from trl import RewardTrainer

from services.core.rankings import Ranking
from services.reward.encoding import encode_pair
from services.reward.ensemble import OnlineBagging

# One ranking's tiers: row indices of the scores, best tier first; rows in one tier tie.
Tiers = Sequence[Sequence[int]]


def plackett_luce_loss(scores: torch.Tensor, tiers: Tiers) -> torch.Tensor:
    """Negative log-likelihood of one ranking with ties under Plackett-Luce (Breslow's approximation).

    With tiers T_1 (best) ... T_m and scores s, the loss is

        -sum_t sum_{i in T_t} [ s_i - log sum_{j in T_t u T_t+1 u ... u T_m} exp(s_j) ]

    Every item of tier t is picked from the same set: its own tier and every
    worse one. The exact likelihood of a tie sums over all orders of the tied
    items (m! terms); Breslow's approximation, the usual one for tied event
    times in Cox models, takes one term instead. It is symmetric in tied items,
    so a tie gives no order between them. Rows of `scores` in no tier take
    no part. TRL and OpenRLHF ship pairwise losses only, hence this one.
    """
    return plackett_luce_batch_loss(scores, [tiers])


def plackett_luce_batch_loss(scores: torch.Tensor, rankings: Sequence[Tiers]) -> torch.Tensor:
    """Mean of `plackett_luce_loss` over rankings whose tiers index one flat score tensor."""
    return plackett_luce_per_ranking(scores, rankings).mean()


def plackett_luce_per_ranking(scores: torch.Tensor, rankings: Sequence[Tiers]) -> torch.Tensor:
    """`plackett_luce_loss` of each ranking, as one vector (ensembles weight them per member)."""
    rows, ranking, tier = _ranked_rows(rankings, scores.device)
    s = scores[rows].float()
    # still_in[i, j]: j has not been picked yet when i's tier is -- same ranking, same tier or worse.
    still_in = (ranking[:, None] == ranking[None, :]) & (tier[None, :] >= tier[:, None])
    # Each row keeps at least itself, so no logsumexp runs over nothing (which would give -inf and NaN gradients).
    log_pool = torch.logsumexp(s.expand(len(s), -1).masked_fill(~still_in, float("-inf")), dim=1)
    return s.new_zeros(len(rankings)).index_add(0, ranking, log_pool - s)


def strict_pair_accuracy(scores: torch.Tensor, rankings: Sequence[Tiers]) -> torch.Tensor:
    """Share of strict pairs (better tier, worse tier) whose better item scores higher; TRL's training metric."""
    rows, ranking, tier = _ranked_rows(rankings, scores.device)
    s = scores[rows]
    better = (ranking[:, None] == ranking[None, :]) & (tier[:, None] < tier[None, :])
    return (s[:, None] > s[None, :])[better].float().mean()


def _ranked_rows(rankings: Sequence[Tiers], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ranked row as (row, its ranking, its tier rank), three aligned index tensors."""
    entries = [(row, r, t) for r, tiers in enumerate(rankings) for t, tier in enumerate(tiers) for row in tier]
    return torch.tensor(entries, dtype=torch.long, device=device).reshape(-1, 3).unbind(1)


def strict_pairs(tiers: Tiers) -> int:
    """How many pairs the pairwise path makes of a ranking: every (better tier, worse tier) combination."""
    sizes = [len(tier) for tier in tiers]
    return (sum(sizes) ** 2 - sum(n * n for n in sizes)) // 2


def encode_rankings(rankings: Sequence[Ranking], tokenizer, max_length: int) -> dict[str, list]:
    """Dataset columns, one row per ranking: token ids of its ranked candidates, and its tiers over those.

    Unranked candidates take part in no comparison, so they are not encoded.
    """
    columns: dict[str, list] = {"input_ids": [], "tiers": []}
    for ranking in rankings:
        ranked = [c for tier in ranking.tiers for c in tier]
        row = {c: index for index, c in enumerate(ranked)}
        columns["input_ids"].append(
            [encode_pair(tokenizer, ranking.prompt, ranking.candidates[c], max_length) for c in ranked]
        )
        columns["tiers"].append([[row[c] for c in tier] for tier in ranking.tiers])
    return columns


@dataclass
class RankingCollator:
    """Rankings -> one right-padded batch of all their candidates, with each ranking's tiers as batch rows."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        ids: list[torch.Tensor] = []
        tiers = []
        for example in examples:
            offset = len(ids)
            ids.extend(torch.tensor(candidate) for candidate in example["input_ids"])
            tiers.append([[offset + row for row in tier] for tier in example["tiers"]])
        # Right padding, as TRL's pairwise collator: decoder heads read the last token that is not padding.
        return {
            "input_ids": pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id),
            "attention_mask": pad_sequence([torch.ones_like(t) for t in ids], batch_first=True, padding_value=0),
            "tiers": tiers,
        }


class PlackettLuceTrainer(RewardTrainer):
    """TRL's RewardTrainer with the listwise loss over batches from `batch_sampler`.

    Subclassing RewardTrainer keeps the model handling of the pairwise path:
    the same peft_config wrapping, dropout off, the pad token set on the model.
    """

    def __init__(self, *args: Any, batch_sampler: Sampler[list[int]], bagging: OnlineBagging, **kwargs: Any):
        self._batch_sampler = batch_sampler
        self.bagging = bagging
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # Rows are encoded already (encode_rankings); TRL's preparation expects chosen/rejected pairs.
        return dataset

    def get_train_dataloader(self) -> DataLoader:
        loader = DataLoader(self.train_dataset, batch_sampler=self._batch_sampler, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # One forward pass over every candidate in the batch; the tiers say which rows form each ranking.
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        members = outputs.logits  # (candidates, heads): an ensemble's heads score every candidate
        per_member = torch.stack(
            [plackett_luce_per_ranking(members[:, m], inputs["tiers"]) for m in range(members.shape[1])], dim=1
        )
        loss = self.bagging.loss(per_member, members)
        with torch.no_grad():
            mode = "train" if model.training else "eval"
            accuracy = strict_pair_accuracy(members.mean(dim=1), inputs["tiers"])
            self._metrics[mode]["accuracy"].append(accuracy.item())
        return (loss, outputs) if return_outputs else loss
