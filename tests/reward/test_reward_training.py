import math

import pytest

from services.core.errors import InvalidRequestError
from services.core.rankings import Ranking
from services.reward.ranking import rank_candidates
from services.reward.scorer import length_buckets
from services.reward.train_config import RewardTrainConfig
from services.reward.trainer import (
    NotEnoughDataError,
    PromptGroupBatchSampler,
    prepare_split,
    train_reward_model,
)
from services.sim.synthetic_rankings import synthetic_rankings


def test_batches_never_split_a_prompt_group():
    groups = [list(range(start, start + size)) for start, size in [(0, 3), (3, 6), (9, 1), (10, 10), (20, 2)]]
    sampler = PromptGroupBatchSampler(groups, max_pairs=8, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(22))
    for group in groups:
        assert any(set(group) <= set(b) for b in batches), group
    assert all(len(b) <= 8 or len(b) == 10 for b in batches)  # only the 10-pair group may exceed


def test_too_little_data_is_refused_with_the_numbers():
    one_prompt = [Ranking("p", ("a", "b", "c"), ((0,), (1,), (2,)))]
    with pytest.raises(NotEnoughDataError, match=r"1 rankings -> 1 prompts, 3 pairs"):
        prepare_split(one_prompt, RewardTrainConfig())


@pytest.mark.parametrize(
    "field, value",
    [
        ("learning_rate", math.nan),
        ("learning_rate", -1.0),
        ("epochs", 0),
        ("heldout_fraction", 1.0),
        ("lora_alpha", math.inf),
        ("max_length", 2),
    ],
)
def test_config_values_out_of_range_are_rejected(field, value):
    config = RewardTrainConfig(**{field: value})
    with pytest.raises(InvalidRequestError, match=field):
        config.validate()


def test_rank_gives_order_and_consistent_bradley_terry_probabilities():
    result = rank_candidates([0.1, 2.0, -1.0], "v")
    assert result.order == [1, 0, 2]
    p = result.probabilities
    assert p[1][0] == pytest.approx(1 / (1 + math.exp(-1.9)))
    for i in range(3):
        assert p[i][i] == 0.5
        for j in range(3):
            assert p[i][j] + p[j][i] == pytest.approx(1.0)


def test_length_buckets_group_similar_lengths_within_a_token_budget():
    lengths = [100, 5, 6, 90, 7, 95]
    chunks = length_buckets(lengths, max_tokens=200)
    assert sorted(i for c in chunks for i in c) == list(range(6))
    for chunk in chunks:
        assert len(chunk) == 1 or len(chunk) * max(lengths[i] for i in chunk) <= 200
    assert [1, 2, 4] in chunks  # the short ones share a chunk


@pytest.mark.parametrize("use_lora", [False, True])
def test_training_learns_the_rule_and_saves_a_loadable_model(tiny_model_dir, tmp_path, use_lora):
    from services.reward.scorer import RewardScorer, ScoreItem

    config = RewardTrainConfig(epochs=10, learning_rate=1e-3, batch_size=16, use_lora=use_lora, lora_r=16)
    split = prepare_split(synthetic_rankings(60, 4, seed=1), config)
    progress = []
    outcome = train_reward_model(tiny_model_dir, split, config, tmp_path, on_progress=progress.append)
    assert progress and progress[-1].step == progress[-1].total_steps == outcome.steps
    assert progress[-1].loss < progress[0].loss
    # 60 prompts -> ~12 held-out prompts, ~60 pairs: 0.7 is > 3 standard deviations above chance.
    assert outcome.heldout_accuracy >= 0.7, outcome
    scorer = RewardScorer.load(tmp_path, "v", 512)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("adapter_*"))
    scores = scorer.score([ScoreItem("q", "Happy to help!"), ScoreItem("q", "Go away.")])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


def test_margins_follow_the_rank_gap_when_enabled(tiny_model_dir):
    from services.core.rankings import rankings_to_pairs
    from services.models.loading import load_reward_model
    from services.reward.trainer import _pair_rows

    _, tokenizer = load_reward_model(tiny_model_dir)
    pairs = rankings_to_pairs(Ranking("p", ("a", "b", "c"), ((0,), (1,), (2,))))
    rows = _pair_rows(pairs, tokenizer, RewardTrainConfig(margin_per_rank=0.5))
    assert [(p.rank_gap, m) for p, m in zip(pairs, rows["margin"], strict=True)] == [
        (1, 0.0),
        (2, 0.5),
        (1, 0.0),
    ]
    assert "margin" not in _pair_rows(pairs, tokenizer, RewardTrainConfig())
