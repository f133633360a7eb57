import math
import random

import pytest

from services.controller.gates import Gates, IterationMetrics, decide
from services.controller.prompt_selection import order_uncertainty, select_prompts
from services.errors import InvalidRequestError
from services.reward.ranking import rank_candidates


def test_all_gates_pass_promotes_both():
    decision = decide(IterationMetrics(0.75, 0.74, 0.7, 1.0), Gates())
    assert (decision.promote_reward, decision.promote_policy, decision.reasons) == (True, True, [])
    assert decision.label == "promote"


@pytest.mark.parametrize(
    "metrics, reward_ok, reason",
    [
        (IterationMetrics(0.55, None, 0.7, 1.0), False, "accuracy 0.550 < 0.6"),
        (IterationMetrics(0.70, 0.80, 0.7, 1.0), False, "fell more than 0.02"),
        (IterationMetrics(0.75, 0.74, 0.5, 1.0), True, "win-rate 0.500 < 0.55"),
        (IterationMetrics(0.75, 0.74, 0.7, 12.0), True, "KL"),
        (IterationMetrics(0.75, 0.74, 0.7, math.nan), True, "KL"),
        (IterationMetrics(math.nan, None, 0.7, 1.0), False, "accuracy nan"),
    ],
)
def test_a_failed_gate_rolls_back_with_its_reason(metrics, reward_ok, reason):
    decision = decide(metrics, Gates())
    assert decision.promote_reward is reward_ok and not decision.promote_policy
    assert decision.label == "rollback" and any(reason in r for r in decision.reasons)


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
