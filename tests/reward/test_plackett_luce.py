import math
import random

import pytest
import torch

from services.core.errors import InvalidRequestError
from services.core.rankings import Ranking
from services.reward.plackett_luce import (
    RankingCollator,
    encode_rankings,
    plackett_luce_batch_loss,
    plackett_luce_loss,
    strict_pairs,
)
from services.reward.train_config import RewardTrainConfig
from services.reward.trainer import (
    PromptGroupBatchSampler,
    TrainingCancelledError,
    _listwise_rankings,
    _prompt_groups,
    prepare_split,
    train_reward_model,
)
from services.sim.synthetic_rankings import FILLER, FRIENDLY, HOSTILE, synthetic_rankings


def _strong_rankings(n_prompts: int, seed: int) -> list[Ranking]:
    """Four candidates per prompt with 2, 1 friendly or 1, 2 hostile sentences: a rule a tiny model learns fast."""
    rng = random.Random(seed)
    rankings = []
    for index in range(n_prompts):
        levels = [2, 1, -1, -2]
        rng.shuffle(levels)
        candidates = []
        for level in levels:
            sentences = rng.sample(FRIENDLY if level > 0 else HOSTILE, abs(level)) + rng.sample(FILLER, 1)
            rng.shuffle(sentences)
            candidates.append(" ".join(sentences))
        best_first = sorted(range(4), key=lambda c: -levels[c])
        rankings.append(Ranking(f"Tell me about topic {index}?", tuple(candidates), tuple((c,) for c in best_first)))
    return rankings


def test_loss_of_a_strict_ranking_matches_the_hand_computation():
    scores = torch.tensor([2.0, 0.5, -1.0, 1.0])
    tiers = ((0,), (3,), (1,), (2,))  # order 0 > 3 > 1 > 2
    e = math.exp
    expected = -(
        (2.0 - math.log(e(2.0) + e(1.0) + e(0.5) + e(-1.0)))
        + (1.0 - math.log(e(1.0) + e(0.5) + e(-1.0)))
        + (0.5 - math.log(e(0.5) + e(-1.0)))
        + (-1.0 - math.log(e(-1.0)))  # the last pick has no alternative: log 1 = 0
    )
    assert plackett_luce_loss(scores, tiers).item() == pytest.approx(expected, rel=1e-6)


def test_a_tie_gives_no_order_between_the_tied_items():
    tied = ((0,), (1, 2), (3,))
    loss = plackett_luce_loss(torch.tensor([1.0, 0.3, -0.2, -1.0]), tied)
    swapped = plackett_luce_loss(torch.tensor([1.0, -0.2, 0.3, -1.0]), tied)
    assert swapped.item() == pytest.approx(loss.item(), rel=1e-6)

    equal = torch.tensor([1.0, 0.3, 0.3, -1.0], requires_grad=True)
    plackett_luce_loss(equal, tied).backward()
    # d loss / d (s_1 - s_2) with s_1 + s_2 held fixed is (g_1 - g_2) / 2.
    assert (equal.grad[1] - equal.grad[2]).item() == pytest.approx(0.0, abs=1e-7)

    strict = plackett_luce_loss(torch.tensor([1.0, 0.3, -0.2, -1.0]), ((0,), (1,), (2,), (3,)))
    assert abs(strict.item() - loss.item()) > 0.1


def test_unranked_candidates_do_not_change_the_loss():
    tiers = ((2,), (0,), (3,))  # candidate 1 is unranked
    scores = torch.tensor([0.5, 9.0, 1.5, -0.5], requires_grad=True)
    loss = plackett_luce_loss(scores, tiers)
    loss.backward()
    moved = plackett_luce_loss(torch.tensor([0.5, -7.0, 1.5, -0.5]), tiers)
    without = plackett_luce_loss(torch.tensor([0.5, 1.5, -0.5]), ((1,), (0,), (2,)))
    assert moved.item() == pytest.approx(loss.item(), rel=1e-6)
    assert without.item() == pytest.approx(loss.item(), rel=1e-6)
    assert scores.grad[1].item() == 0.0


def test_batch_loss_is_the_mean_over_rankings_of_one_flat_score_tensor():
    first, second = ((0,), (1, 2)), ((1,), (0,), (2,))
    a, b = torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.3, 0.9, -1.2])
    batched = plackett_luce_batch_loss(torch.cat([a, b]), [first, [[3 + i for i in tier] for tier in second]])
    expected = (plackett_luce_loss(a, first) + plackett_luce_loss(b, second)) / 2
    assert batched.item() == pytest.approx(expected.item(), rel=1e-6)


def test_rankings_are_encoded_without_unranked_candidates_and_collated_into_one_batch(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rankings = [
        Ranking("p", ("a", "b", "c", "d"), ((2,), (0, 3))),  # "b" is unranked
        Ranking("q", ("x", "y"), ((1,), (0,))),
    ]
    columns = encode_rankings(rankings, tokenizer, max_length=64)
    assert columns["tiers"] == [[[0], [1, 2]], [[0], [1]]]
    assert len(columns["input_ids"][0]) == 3
    examples = [{"input_ids": ids, "tiers": tiers} for ids, tiers in zip(*columns.values(), strict=True)]
    batch = RankingCollator(tokenizer.pad_token_id)(examples)
    assert batch["input_ids"].shape[0] == batch["attention_mask"].shape[0] == 5
    assert batch["tiers"] == [[[0], [1, 2]], [[3], [4]]]


def test_ranking_batches_hold_whole_prompts_and_match_the_pairwise_batches():
    config = RewardTrainConfig(batch_size=16)
    split = prepare_split(synthetic_rankings(30, 4, seed=2), config)
    rankings = _listwise_rankings(split)
    counts = [strict_pairs(r.tiers) for r in rankings]
    assert sum(counts) == len(split.train)
    listwise = PromptGroupBatchSampler(_prompt_groups(rankings), config.batch_size, config.seed, counts).batches
    pairwise = PromptGroupBatchSampler(_prompt_groups(split.train), config.batch_size, config.seed).batches
    assert [{rankings[i].prompt for i in b} for b in listwise] == [{split.train[i].prompt for i in b} for b in pairwise]
    for batch in listwise:
        prompts = {rankings[i].prompt for i in batch}
        assert len(prompts) == 1 or sum(counts[i] for i in batch) <= config.batch_size


def test_plackett_luce_training_learns_the_rule_and_reports_progress(tiny_model_dir, tmp_path):
    config = RewardTrainConfig(epochs=4, learning_rate=1e-3, batch_size=16, loss="plackett_luce")
    split = prepare_split(_strong_rankings(40, seed=0), config)
    progress = []
    outcome = train_reward_model(tiny_model_dir, split, config, tmp_path, on_progress=progress.append)
    assert [p.step for p in progress] == list(range(1, outcome.steps + 1))
    assert progress[-1].total_steps == outcome.steps
    assert progress[-1].loss < progress[0].loss and math.isfinite(progress[-1].accuracy)
    # 8 held-out prompts -> 48 pairs; 0.8 is > 4 standard deviations above chance, and seeds 0-5 reach 0.9-0.98.
    assert outcome.heldout_accuracy >= 0.8, outcome
    assert list(tmp_path.glob("*.safetensors"))


def test_plackett_luce_training_honours_the_stop_flag(tiny_model_dir, tmp_path):
    config = RewardTrainConfig(epochs=2, batch_size=16, loss="plackett_luce")
    split = prepare_split(_strong_rankings(12, seed=1), config)
    progress = []
    with pytest.raises(TrainingCancelledError, match="step 1"):
        train_reward_model(
            tiny_model_dir, split, config, tmp_path, on_progress=progress.append, should_stop=lambda: True
        )
    assert [p.step for p in progress] == [1]
    assert not list(tmp_path.iterdir())


def test_plackett_luce_with_lora_saves_a_merged_checkpoint(tiny_model_dir, tmp_path):
    from services.reward.scorer import RewardScorer, ScoreItem

    config = RewardTrainConfig(epochs=1, learning_rate=1e-3, batch_size=16, loss="plackett_luce", use_lora=True)
    split = prepare_split(synthetic_rankings(12, 4, seed=2), config)  # ties included
    train_reward_model(tiny_model_dir, split, config, tmp_path)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("adapter_*"))
    # LoRA's B matrices start at zero: a changed attention weight means adapters were trained and merged,
    # and the embeddings, frozen under LoRA, would have moved in full training.
    changed, frozen = "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"
    assert not torch.equal(_weight(tmp_path, changed), _weight(tiny_model_dir, changed))
    assert torch.equal(_weight(tmp_path, frozen), _weight(tiny_model_dir, frozen))
    items = [ScoreItem("q", "Happy to help!"), ScoreItem("q", "Go away.")]
    assert all(math.isfinite(s) for s in RewardScorer.load(tmp_path, "v", 512).score(items))


def _weight(checkpoint, name: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(next(checkpoint.glob("*.safetensors")))[name]


@pytest.mark.parametrize(
    "config, message",
    [
        (RewardTrainConfig(loss="unknown"), r"loss must be one of bradley_terry, plackett_luce; got 'unknown'"),
        (RewardTrainConfig(loss="plackett_luce", margin_per_rank=0.5), r"margin_per_rank=0.5 needs .*bradley_terry"),
    ],
)
def test_unknown_losses_and_margins_with_plackett_luce_are_refused(config, message):
    with pytest.raises(InvalidRequestError, match=message):
        config.validate()
