"""The benchmark stand-in model: what it scores, and that it can serve only a registry it created itself."""

import pytest

from services.cli import build_parser
from services.models.loading import ModelNotFoundError
from services.models.registry import ModelRegistry
from services.reward.null_scorer import NULL_MODEL, NotAStandInRegistryError, NullRewardService, NullScorer
from services.reward.scorer import ScoreItem
from services.reward.service import VERSION_PREFIX, RewardService, RewardServiceConfig


def test_its_scores_are_response_lengths_one_member_each():
    scorer = NullScorer("reward-0001", max_length=4)
    items = [ScoreItem("Hi", "Hello there!"), ScoreItem("Hi", "Go.")]
    assert scorer.score_members(items) == [(12.0,), (3.0,)]
    assert scorer.score(items) == [12.0, 3.0]
    assert scorer.members == 1 and scorer.model.config.model_type == NULL_MODEL
    assert len(scorer.encode(ScoreItem("one two three", "four five six"))) == 4  # words, up to max_length


async def test_it_serves_a_registry_of_its_own_through_the_batcher(tmp_path):
    service = NullRewardService(RewardServiceConfig(registry_dir=tmp_path / "registry", base_model=NULL_MODEL))
    await service.start()
    try:
        scores, version = await service.score([ScoreItem("Hi", "Hello!"), ScoreItem("Hi", "Go away.")])
        assert (scores, version) == ([6.0, 8.0], "reward-0001")
        assert service.architecture == NULL_MODEL
    finally:
        await service.stop()
    # ... and a real service refuses that registry: it holds no weights.
    with pytest.raises(ModelNotFoundError, match="no weights"):
        RewardService(RewardServiceConfig(registry_dir=tmp_path / "registry"))._load_scorer("reward-0001")


def test_it_refuses_a_registry_of_real_models(tmp_path):
    registry = ModelRegistry(tmp_path / "registry", VERSION_PREFIX)
    registry.ensure_base({"base_model": "minilm"}, save=lambda staging: (staging / "model.safetensors").touch())
    service = NullRewardService(RewardServiceConfig(registry_dir=tmp_path / "registry"))
    with pytest.raises(NotAStandInRegistryError, match="benchmark stand-in"):
        service._load_scorer(registry.active)


def test_serve_reward_help_does_not_offer_it():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    reward = serve._subparsers._group_actions[0].choices["reward"]
    assert "--null-model" not in reward.format_help()
    assert "--processes" in reward.format_help() and "--batch-wait" in reward.format_help()
