"""The loop's report: did the policy get better by the gold scorer's measure, and can the numbers be trusted?

The final (active) policy and the initial one each answer the held-out
prompts several times with the same seeds; the gold scorer judges every
answer; the win-rate is bootstrapped over prompts. Every iteration's policy
is sampled the same way, so the report shows the gold score, the proxy
(reward-model) score, KL and text diversity side by side: reward hacking
shows as proxy up, gold flat, diversity down.

This module assembles the report's figures; report_statistics computes them
and report_render writes them out as JSON, Markdown, HTML and plots.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from services.controller.report_statistics import bootstrap_interval, distinct_n, per_prompt_win_rates
from services.core.rankings import GoldScorer
from services.policy.client import PolicyClient

# The demo's targets (`make demo` on a 2-core machine): a loop that learns round after round.
TARGETS = {
    "gold_win_rate": 0.85,  # final policy over the initial one, by the gold scorer
    "gold_win_rate_ci_low": 0.75,
    "iterations": 3,
    "wall_time_s": 2100.0,
    "rm_accuracy_vs_annotators": 0.95,  # every round's new reward model, on its round's held-out comparisons
    "gold_win_rate_vs_previous": 0.55,  # every round's policy over the one it started from
    "rm_gold_accuracy_max_drop": 0.01,  # on the fixed gold set, from one round's reward model to the next
}


@dataclass
class VersionSamples:
    """One policy version's answers to the held-out prompts and their gold scores."""

    version: str
    texts: list[list[str]]  # per held-out prompt, `samples` answers
    gold: list[list[float]]

    @property
    def gold_mean(self) -> float:
        """Mean gold score over every answer."""
        return statistics.fmean(g for row in self.gold for g in row)

    def distinct(self, n: int) -> float:
        """distinct-n over every answer."""
        return distinct_n([t for row in self.texts for t in row], n)


def sample_versions(
    policy: PolicyClient,
    versions: Sequence[str],
    prompts: Sequence[str],
    gold: GoldScorer,
    *,
    samples: int,
    seed: int,
    max_new_tokens: int,
) -> dict[str, VersionSamples]:
    """Every version answers every prompt `samples` times, with the same seed (common random numbers)."""
    result = {}
    for version in dict.fromkeys(versions):
        texts, _ = policy.generate_texts(prompts, samples, version=version, seed=seed, max_new_tokens=max_new_tokens)
        scores = [[gold(p, t) for t in row] for p, row in zip(prompts, texts, strict=True)]
        result[version] = VersionSamples(version, texts, scores)
    return result


def _number(value) -> float | None:
    """A finite number, or None (NaN: e.g. no pair that two annotators both ranked)."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def iteration_rows(
    history: Sequence[dict], samples: dict[str, VersionSamples], reward_models: dict[str, dict]
) -> list[dict]:
    """Each finished iteration's numbers, next to the gold measure of the policy it produced."""
    rows = []
    for record in history:
        if record.get("stage") != "done":
            continue
        drawn = samples.get(record.get("policy_version"))
        on_gold = reward_models.get(record.get("reward_version"), {})
        # The gate's figures: both reward models and the annotators on the round's held-out comparisons.
        agreement, accuracy = _number(record.get("rm_agreement")), _number(record.get("rm_accuracy"))
        rows.append({
            "iteration": record["iteration"],
            "rankings": record.get("rankings"),
            "from_prediction": record.get("from_prediction"),
            "untouched_prerankings": record.get("untouched_prerankings"),
            "rm_untouched_excluded": record.get("rm_untouched_excluded"),
            "annotator_agreement": _number(record.get("agreement")),
            "annotator_temperature": record.get("annotator_temperature"),
            "candidate_policies": record.get("generated_by"),
            "reward_version": record.get("reward_version"),
            "rm_heldout_pairs": record.get("rm_heldout_pairs"),
            "rm_accuracy": accuracy,
            "rm_active_accuracy": _number(record.get("rm_baseline_accuracy")),
            "rm_agreement": agreement,
            "rm_accuracy_vs_annotators": accuracy / agreement if accuracy and agreement else None,
            "rm_gold_accuracy": _number(on_gold.get("accuracy")),
            "reward_promoted": not record.get("rm_reasons"),
            "policy_version": record.get("policy_version"),
            "policy_started_from": record.get("policy_started_from"),
            "proxy_win_rate_vs_previous": record.get("win_rate"),
            "gold_win_rate_vs_previous": record.get("gold_win_rate"),
            "human_win_rate_vs_previous": _number(record.get("human_win_rate")),
            "judges_agreement": record.get("judges_agreement"),
            "kl": record.get("kl"),
            "proxy_mean": record.get("candidate_mean_reward"),
            "proxy_mean_previous": record.get("baseline_mean_reward"),
            "gold_mean": drawn.gold_mean if drawn else None,
            "distinct_1": drawn.distinct(1) if drawn else None,
            "distinct_2": drawn.distinct(2) if drawn else None,
            "decision": record.get("decision"),
            "reasons": list(record.get("rm_reasons") or []) + list(record.get("policy_reasons") or []),
            "seconds": sum((record.get("seconds") or {}).values()),
        })  # fmt: skip
    return rows


def build_report(
    history: Sequence[dict],
    samples: dict[str, VersionSamples],
    initial: str,
    final: str,
    *,
    wall_time_s: float,
    seed: int = 0,
    reward_models: dict[str, dict] | None = None,
    policies: Sequence[dict] = (),
    conservative_lambda: float = 1.0,
) -> dict:
    """report.json: the final policy against the initial one on held-out prompts, and every iteration.

    `reward_models`: every reward version's accuracy on the fixed gold set (report_reward_models), in
    the order they were made, the untrained base first. `policies`: every sampled policy's proxy,
    conservative and gold mean by the serving reward model (report_reward_models).
    """
    reward_models = reward_models or {}
    rows = iteration_rows(history, samples, reward_models)
    per_prompt = per_prompt_win_rates(samples[final].gold, samples[initial].gold)
    low, high = bootstrap_interval(per_prompt, seed=seed)
    # The reward model the loop ended with: the last one that passed its gate.
    serving = next((r for r in reversed(rows) if r["reward_promoted"]), {})
    agreements = [r["annotator_agreement"] for r in rows if r["annotator_agreement"] is not None]
    report = {
        "initial_version": initial,
        "final_version": final,
        "heldout_prompts": len(samples[final].gold),
        "samples_per_prompt": len(samples[final].gold[0]) if samples[final].gold else 0,
        "gold_win_rate": statistics.fmean(per_prompt),
        "gold_win_rate_ci": [low, high],
        "initial": {"gold_mean": samples[initial].gold_mean, "distinct_1": samples[initial].distinct(1),
                    "distinct_2": samples[initial].distinct(2)},
        "final": {"gold_mean": samples[final].gold_mean, "distinct_1": samples[final].distinct(1),
                  "distinct_2": samples[final].distinct(2)},
        "iterations": rows,
        "annotator_agreement": statistics.fmean(agreements) if agreements else None,
        "rm_accuracy_vs_annotators": {
            "reward_version": serving.get("reward_version"),
            "rm_accuracy": serving.get("rm_accuracy"),
            "annotator_agreement": serving.get("rm_agreement"),
            "ratio": serving.get("rm_accuracy_vs_annotators"),
        },
        "reward_models_on_gold_set": [{"version": v, **figures} for v, figures in reward_models.items()],
        "policies_by_serving_reward_model": list(policies),
        "conservative_lambda": conservative_lambda,
        "promotions": sum(r["decision"] == "promote" for r in rows),
        "rollbacks": sum(r["decision"] == "rollback" for r in rows),
        "wall_time_s": wall_time_s,
        "targets": TARGETS,
    }  # fmt: skip
    report["targets_met"] = targets_met(report, low)
    return report


def targets_met(report: dict, ci_low: float) -> dict[str, bool]:
    """Each of TARGETS, met or not; a figure that could not be measured counts as missed."""
    rows = report["iterations"]
    ratios = [r["rm_accuracy_vs_annotators"] for r in rows]
    vs_previous = [r["gold_win_rate_vs_previous"] for r in rows]
    on_gold = [m["accuracy"] for m in report["reward_models_on_gold_set"]]
    promoted_on_gold = [on_gold[0]] if on_gold else []  # the base, then each promoted round's model
    promoted_on_gold += [r["rm_gold_accuracy"] for r in rows if r["reward_promoted"]]
    measured = len(promoted_on_gold) >= 2 and all(x is not None and math.isfinite(x) for x in promoted_on_gold)
    drops = [b - a for a, b in itertools.pairwise(promoted_on_gold)] if measured else []
    return {
        "gold_win_rate": report["gold_win_rate"] >= TARGETS["gold_win_rate"],
        "gold_win_rate_ci_low": ci_low >= TARGETS["gold_win_rate_ci_low"],
        "iterations": len(rows) >= TARGETS["iterations"],
        "wall_time_s": report["wall_time_s"] <= TARGETS["wall_time_s"],
        "every_reward_model_promoted": bool(rows) and all(r["reward_promoted"] for r in rows),
        "every_policy_promoted": bool(rows) and all(r["decision"] == "promote" for r in rows),
        "rm_accuracy_vs_annotators": bool(rows)
        and all(x is not None and x >= TARGETS["rm_accuracy_vs_annotators"] for x in ratios),
        "gold_win_rate_vs_previous": bool(rows)
        and all(x is not None and x >= TARGETS["gold_win_rate_vs_previous"] for x in vs_previous),
        "rm_gold_accuracy_never_falls": measured and all(d >= -TARGETS["rm_gold_accuracy_max_drop"] for d in drops),
    }
