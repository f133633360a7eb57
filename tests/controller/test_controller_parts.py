import math
import random

import pytest

from services.controller.gates import Gates, PromptTally, heldout_figures, policy_gate, reward_gate
from services.controller.loop import policy_train_settings
from services.controller.loop_config import LoopConfig, toml_text
from services.controller.prompt_selection import order_uncertainty, select_prompts
from services.core.errors import InvalidRequestError
from services.reward.ranking import rank_candidates


def tallies(accuracy: float, active: float, agreement: float | None, prompts: int = 10) -> list[PromptTally]:
    """Held-out prompts that all agree: no spread between them, so the bootstrap bound is the point figure."""
    compared = 0 if agreement is None else 100
    tally = PromptTally(100, accuracy * 100, active * 100, round((agreement or 0) * 100), compared)
    return [tally] * prompts


def gate(accuracy: float, active: float, agreement: float | None, gates: Gates | None = None) -> list[str]:
    return reward_gate(tallies(accuracy, active, agreement), gates or Gates())


def test_gates_pass_with_no_reasons():
    assert gate(0.75, 0.74, 0.8) == [] and gate(0.75, 0.5, None) == []
    assert policy_gate(0.7, 1.0, Gates()) == []


def test_the_fair_gate_promotes_a_model_better_on_the_shared_split_below_last_rounds_number():
    # Last round's model scored 0.80 on last round's (easier) pairs; on this round's pairs the active
    # model scores 0.55, the new one 0.62, and the annotators agree on 0.66 of them.
    assert gate(0.62, 0.55, 0.66) == []
    # Judged against last round's number (the old rule: not more than 0.02 below 0.80) it would have been refused.
    assert gate(0.62, 0.80, None, Gates(min_rm_accuracy=0.0)) != []


def test_the_reward_gate_refuses_on_evidence_not_on_noise():
    # Ten held-out prompts; the new model is 0.03 below the active one overall, more than epsilon (0.02).
    noisy = [PromptTally(20, 20 * a, 20 * b, 14, 20) for a, b in [(0.9, 0.6), (0.4, 0.8)] * 5]  # prompts disagree
    steady = [PromptTally(20, 20 * 0.62, 20 * 0.65, 14, 20)] * 10  # every prompt says the same
    assert heldout_figures(noisy).accuracy == pytest.approx(0.65)
    assert heldout_figures(noisy).active_accuracy == pytest.approx(0.70)
    assert reward_gate(noisy, Gates()) == []  # a drop the prompts do not agree on is no evidence
    assert "below the active model" in reward_gate(steady, Gates())[0]  # the same drop on every prompt is
    # At 0.5 confidence the gate judges by the point figures alone.
    assert reward_gate(noisy, Gates(rm_gate_confidence=0.5)) != []


@pytest.mark.parametrize(
    "accuracy, active, agreement, reason",
    [
        (0.55, 0.50, None, "accuracy 0.550 < 0.6 (annotator agreement unknown)"),
        (0.70, 0.80, 0.70, "more than 0.02 below the active model's 0.800"),
        (0.60, 0.55, 0.75, "< 0.9 x the annotators' agreement 0.750"),
        (math.nan, 0.5, 0.7, "no held-out comparisons"),
    ],
)
def test_a_failing_reward_model_gate_says_why(accuracy, active, agreement, reason):
    reasons = reward_gate([] if math.isnan(accuracy) else tallies(accuracy, active, agreement), Gates())
    assert any(reason in r for r in reasons)


@pytest.mark.parametrize(
    "win_rate, kl, reason", [(0.5, 1.0, "win-rate 0.500 < 0.55"), (0.7, 12.0, "KL"), (0.7, math.nan, "KL")]
)
def test_a_failing_policy_gate_says_why(win_rate, kl, reason):
    assert any(reason in r for r in policy_gate(win_rate, kl, Gates()))


def test_a_policy_judged_by_people_is_refused_in_their_name():
    assert policy_gate(0.4, 1.0, Gates(), judge="people") == ["policy win-rate by people 0.400 < 0.55"]


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


class FakePolicy:
    """Writes "<version> answer <i> to <prompt>"; records each call's version and count."""

    def __init__(self):
        self.calls = []

    def generate_texts(self, prompts, n, *, version="", **sampling):
        self.calls.append((version, n))
        return [[f"{version} answer {i} to {p}" for i in range(n)] for p in prompts], version


def test_mixed_candidates_split_the_writing_between_versions_and_record_who_wrote_each():
    from services.controller.candidates import mixed_candidates, provenance

    policy = FakePolicy()
    candidates, origins = mixed_candidates(policy, ["p", "q"], 4, ["policy-0003", "policy-0002"], random.Random(0))
    assert sorted(policy.calls) == [("policy-0002", 2), ("policy-0003", 2)]
    for texts, who in zip(candidates, origins, strict=True):
        assert sorted(who) == ["policy-0002", "policy-0002", "policy-0003", "policy-0003"]
        assert all(text.startswith(version) for text, version in zip(texts, who, strict=True))
    assert len({tuple(who) for who in origins}) == 2  # shuffled per prompt: an origin is not a position
    assert provenance(origins[0])["policy_version"] in ("policy-0003+policy-0002", "policy-0002+policy-0003")
    odd, _ = mixed_candidates(FakePolicy(), ["p"], 3, ["a", "b"], random.Random(0))
    assert len(odd[0]) == 3
    alone, who = mixed_candidates(FakePolicy(), ["p"], 3, ["a"], random.Random(0))
    assert len(alone[0]) == 3 and set(who[0]) == {"a"}


def test_the_held_out_split_takes_a_share_of_this_rounds_comparable_prompts():
    from services.controller.reward_evaluation import heldout_split
    from services.core.rankings import Ranking

    strict = [Ranking(f"p{i}", ("a", "b"), ((0,), (1,))) for i in range(8)]
    tie = Ranking("tie", ("a", "b"), ((0, 1),))
    earlier = Ranking("old", ("a", "b"), ((0,), (1,)))
    rankings = [*strict, tie, earlier]
    this_round = [f"p{i}" for i in range(8)] + ["tie"]
    held = heldout_split(this_round, rankings, 0.25, seed=1)
    assert len(held) == 2 and held <= set(this_round) - {"tie"}  # never a prompt without a strict pair
    assert heldout_split(this_round, rankings, 0.25, seed=1) == held  # seeded
    assert heldout_split(["p0"], rankings, 0.25, seed=1) == set()  # one prompt cannot be split
    assert len(heldout_split(["p0", "p1"], rankings, 0.9, seed=1)) == 1  # never all of them
    # Prompts drawn at random are held out before the ones chosen for the reward model's uncertainty.
    for seed in range(5):
        assert heldout_split(this_round, rankings, 0.25, seed, drawn_at_random={"p6", "p7", "tie"}) == {"p6", "p7"}
    assert {"p7"} < heldout_split(this_round, rankings, 0.5, seed=1, drawn_at_random={"p7"})


@pytest.mark.parametrize(
    "override, message",
    [
        ({"candidate_policies": "everyone"}, "candidate_policies"),
        ({"rm_heldout_share": 1.0}, "rm_heldout_share"),
        ({"reward_train": {"loss": "hinge"}}, "loss"),
        ({"reward_train": {"init_version": "reward-0001"}}, "init_version"),
        ({"reward_train": {"epochs": 0}}, "epochs"),
        ({"reward_train": {"ensemble_size": 0}}, "ensemble_size"),
        ({"policy_train": {"conservative_lambda": -0.5}}, "conservative_lambda"),
        ({"policy_method": "dpo", "policy_train": {"conservative_lambda": 1.0}}, "conservative_lambda"),
        ({"policy_train": {"bogus_steps": 3}}, "bogus_steps"),
        ({"policy_judge": "oracle"}, "policy_judge"),
        ({"selection": "vibes"}, "selection"),
        ({"simulated_anchoring": 1.5}, "simulated_anchoring"),
        ({"untouched_prerankings": "halve"}, "untouched_prerankings"),
        ({"gates": Gates(rm_gate_confidence=1.0)}, "rm_gate_confidence"),
    ],
)
def test_bad_loop_settings_are_refused_before_anything_starts(override, message):
    with pytest.raises(InvalidRequestError, match=message):
        LoopConfig(simulate=True, **override).validate()


def test_a_written_loop_toml_reads_back_as_the_same_config(tmp_path):
    settings = {"project_title": 'Say "hi"\\', "iterations": 3, "simulate": True, "random_share": 0.5,
                "gates": {"min_win_rate": 0.6}, "policy_train": {"max_steps": 8}}  # fmt: skip
    path = tmp_path / "loop.toml"
    path.write_text(toml_text(settings))
    config = LoopConfig.from_toml(path)
    assert (config.project_title, config.iterations, config.simulate) == ('Say "hi"\\', 3, True)
    assert config.random_share == 0.5 and config.gates.min_win_rate == 0.6 and config.policy_train == {"max_steps": 8}


@pytest.mark.parametrize("setting, trained_on", [("exclude", [1, 3]), ("keep", [1, 2, 3])])
def test_rankings_submitted_exactly_as_pre_ranked_are_kept_out_of_training_by_default(
    tmp_path, monkeypatch, setting, trained_on
):
    from labelstudio_backend.preference_store import PreferenceStore, StoredPreference
    from services.controller.loop import RlhfLoop
    from services.core.env import LABELSTUDIO_TOKEN_ENV
    from services.core.rankings import Ranking

    monkeypatch.setenv(LABELSTUDIO_TOKEN_ENV, "token")
    store_url = f"sqlite:///{tmp_path / 'prefs.db'}"
    store = PreferenceStore(store_url)
    ranking = Ranking("p", ("a", "b"), ((0,), (1,)))
    for annotation_id, distance in ((1, None), (2, 0.0), (3, 1.0)):  # own, echoed, moved away from the prediction
        met = {"from_prediction": distance is not None, "prediction_distance": distance}
        store.upsert(StoredPreference(annotation_id, 1, annotation_id, "x", ranking, **met))
    config = LoopConfig(simulate=True, store_url=store_url, state_url=f"sqlite:///{tmp_path / 'state.db'}",
                        untouched_prerankings=setting, labelstudio_url="http://127.0.0.1:1")  # fmt: skip
    loop = RlhfLoop(config)
    loop.project_id = 1
    preferences, untouched = loop._training_preferences()
    assert [p.annotation_id for p in preferences] == trained_on and untouched == 1
