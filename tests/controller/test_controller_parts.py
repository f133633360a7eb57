import math
import random

import pytest

from services.controller.gates import Gates, policy_gate, reward_gate
from services.controller.loop import policy_train_settings
from services.controller.loop_config import LoopConfig
from services.controller.prompt_selection import order_uncertainty, select_prompts
from services.core.errors import InvalidRequestError
from services.reward.ranking import rank_candidates


def test_gates_pass_with_no_reasons():
    assert reward_gate(0.75, 0.74, Gates()) == [] and reward_gate(0.75, None, Gates()) == []
    assert policy_gate(0.7, 1.0, Gates()) == []


@pytest.mark.parametrize(
    "accuracy, previous, reason",
    [(0.55, None, "accuracy 0.550 < 0.6"), (0.70, 0.80, "fell more than 0.02"), (math.nan, None, "accuracy nan")],
)
def test_a_failing_reward_model_gate_says_why(accuracy, previous, reason):
    assert any(reason in r for r in reward_gate(accuracy, previous, Gates()))


@pytest.mark.parametrize(
    "win_rate, kl, reason", [(0.5, 1.0, "win-rate 0.500 < 0.55"), (0.7, 12.0, "KL"), (0.7, math.nan, "KL")]
)
def test_a_failing_policy_gate_says_why(win_rate, kl, reason):
    assert any(reason in r for r in policy_gate(win_rate, kl, Gates()))


def test_uncertainty_is_high_when_the_reward_model_cannot_tell_candidates_apart():
    unsure = order_uncertainty(rank_candidates([0.0, 0.01, -0.01], "v").probabilities)
    sure = order_uncertainty(rank_candidates([5.0, 0.0, -5.0], "v").probabilities)
    assert unsure > 0.95 and sure < 0.05


def test_selection_takes_the_most_uncertain_plus_a_random_share():
    uncertainties = [0.1, 0.9, 0.5, 0.95, 0.2, 0.3, 0.8, 0.05]
    picked = select_prompts(uncertainties, 4, "uncertainty", 0.25, random.Random(0))
    by_uncertainty = [p.index for p in picked if p.strategy == "uncertainty"]
    assert by_uncertainty == [3, 1, 6]
    (drawn,) = [p for p in picked if p.strategy == "random"]
    assert drawn.index not in by_uncertainty and len({p.index for p in picked}) == 4
    everything = select_prompts(uncertainties, 4, "random", 0.0, random.Random(0))
    assert {p.strategy for p in everything} == {"random"} and len({p.index for p in everything}) == 4
    with pytest.raises(InvalidRequestError):
        select_prompts(uncertainties, 4, "loudest", 0.2, random.Random(0))


def test_online_policy_training_stops_inside_the_kl_budget_unless_told_otherwise():
    config = LoopConfig(gates=Gates(max_kl=20.0), policy_train={"max_steps": 8})
    assert policy_train_settings(config) == {"max_steps": 8, "target_kl": 16.0}
    assert policy_train_settings(LoopConfig(policy_train={"target_kl": 0.0}))["target_kl"] == 0.0
    assert "target_kl" not in policy_train_settings(LoopConfig(policy_train={"beta": 0.0}))
    assert "target_kl" not in policy_train_settings(LoopConfig(policy_method="dpo"))
    assert "target_kl" not in policy_train_settings(LoopConfig(gates=Gates(max_kl=math.inf)))
