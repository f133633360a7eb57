"""The loop's report: did the policy get better by the gold scorer's measure, and can the numbers be trusted?

The final (active) policy and the initial one each answer the held-out
prompts several times with the same seeds; the gold scorer judges every
answer; the win-rate is bootstrapped over prompts. Every iteration's policy
is sampled the same way, so the report shows the gold score, the proxy
(reward-model) score, KL and text diversity side by side: reward hacking
shows as proxy up, gold flat, diversity down.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.controller.report_figures import bootstrap_interval, distinct_n, per_prompt_win_rates
from services.core.rankings import GoldScorer
from services.policy.client import PolicyClient

TARGETS = {
    "gold_win_rate": 0.75,
    "gold_win_rate_ci_low": 0.65,
    "iterations": 2,
    "wall_time_s": 1800.0,
    "rm_accuracy_vs_annotators": 0.95,
}
FILES = ("report.json", "report.md", "report.html", "scores.png", "reward_model.png", "rankings.png")


@dataclass
class VersionSamples:
    version: str
    texts: list[list[str]]  # per held-out prompt, `samples` answers
    gold: list[list[float]]

    @property
    def gold_mean(self) -> float:
        return statistics.fmean(g for row in self.gold for g in row)

    def distinct(self, n: int) -> float:
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


def _json_safe(value):
    """NaN and infinities (e.g. no annotator pairs to agree on) become null: report.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def iteration_rows(history: Sequence[dict], samples: dict[str, VersionSamples]) -> list[dict]:
    """Each finished iteration's numbers, next to the gold measure of the policy it produced."""
    rows = []
    for record in history:
        if record.get("stage") != "done":
            continue
        drawn = samples.get(record.get("policy_version"))
        agreement, accuracy = _number(record.get("agreement")), _number(record.get("rm_accuracy"))
        rows.append({
            "iteration": record["iteration"],
            "rankings": record.get("rankings"),
            "annotator_agreement": agreement,
            "annotator_temperature": record.get("annotator_temperature"),
            "reward_version": record.get("reward_version"),
            "rm_accuracy": accuracy,
            "rm_accuracy_vs_annotators": accuracy / agreement if accuracy and agreement else None,
            "reward_promoted": not record.get("rm_reasons"),
            "policy_version": record.get("policy_version"),
            "policy_started_from": record.get("policy_started_from"),
            "proxy_win_rate_vs_previous": record.get("win_rate"),
            "gold_win_rate_vs_previous": record.get("gold_win_rate"),
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
) -> dict:
    """report.json: the final policy against the initial one on held-out prompts, and every iteration."""
    rows = iteration_rows(history, samples)
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
            "annotator_agreement": serving.get("annotator_agreement"),
            "ratio": serving.get("rm_accuracy_vs_annotators"),
        },
        "promotions": sum(r["decision"] == "promote" for r in rows),
        "rollbacks": sum(r["decision"] == "rollback" for r in rows),
        "wall_time_s": wall_time_s,
        "targets": TARGETS,
    }  # fmt: skip
    ratio = report["rm_accuracy_vs_annotators"]["ratio"]
    report["targets_met"] = {
        "gold_win_rate": report["gold_win_rate"] >= TARGETS["gold_win_rate"],
        "gold_win_rate_ci_low": low >= TARGETS["gold_win_rate_ci_low"],
        "iterations": len(rows) >= TARGETS["iterations"],
        "wall_time_s": wall_time_s <= TARGETS["wall_time_s"],
        "rm_accuracy_vs_annotators": ratio is not None and ratio >= TARGETS["rm_accuracy_vs_annotators"],
    }
    return report


# -- rendering -----------------------------------------------------------------
COLUMNS = [
    ("iteration", "iteration", "{}"), ("rankings", "rankings", "{}"),
    ("annotator_agreement", "annotator agreement", "{:.3f}"), ("rm_accuracy", "RM accuracy", "{:.3f}"),
    ("rm_accuracy_vs_annotators", "RM / agreement", "{:.2f}"), ("reward_promoted", "RM promoted", "{}"),
    ("proxy_win_rate_vs_previous", "proxy win vs prev", "{:.3f}"),
    ("gold_win_rate_vs_previous", "gold win vs prev", "{:.3f}"), ("kl", "KL", "{:.3f}"),
    ("proxy_mean", "proxy mean", "{:.3f}"), ("gold_mean", "gold mean", "{:.3f}"),
    ("distinct_1", "distinct-1", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
    ("decision", "decision", "{}"), ("seconds", "seconds", "{:.0f}"),
]  # fmt: skip


def _cell(value, form: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else form.format(value)


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    headers = [title for _, title, _ in COLUMNS]
    rows = [[_cell(r.get(key), form) for key, _, form in COLUMNS] for r in report["iterations"]]
    return headers, rows


def _summary(report: dict) -> list[str]:
    low, high = report["gold_win_rate_ci"]
    rm = report["rm_accuracy_vs_annotators"]
    ratio = rm["ratio"]
    lines = [
        f"Final policy {report['final_version']} vs initial {report['initial_version']} on "
        f"{report['heldout_prompts']} held-out prompts x {report['samples_per_prompt']} samples: "
        f"gold win-rate {report['gold_win_rate']:.3f} (95% bootstrap CI {low:.3f} to {high:.3f}).",
        f"Gold mean {report['initial']['gold_mean']:.3f} → {report['final']['gold_mean']:.3f}; "
        f"distinct-1 {report['initial']['distinct_1']:.3f} → {report['final']['distinct_1']:.3f}, "
        f"distinct-2 {report['initial']['distinct_2']:.3f} → {report['final']['distinct_2']:.3f}.",
        f"Serving reward model {rm['reward_version']} vs the annotators: held-out accuracy "
        f"{_cell(rm['rm_accuracy'], '{:.3f}')}, their own agreement {_cell(rm['annotator_agreement'], '{:.3f}')} "
        f"(ratio {_cell(ratio, '{:.2f}')}).",
        f"{len(report['iterations'])} iterations: {report['promotions']} promoted, {report['rollbacks']} rolled back; "
        f"wall time {report['wall_time_s']:.0f} s.",
    ]
    met = report["targets_met"]
    lines.append("Targets: " + ", ".join(f"{k} {'met' if met[k] else 'MISSED'}" for k in met) + ".")
    return lines


IMAGES = [
    ("scores.png", "Gold and proxy score per iteration, and against √KL"),
    ("reward_model.png", "Reward-model accuracy against the annotators' own agreement"),
    ("rankings.png", "Rankings collected per iteration, and the decision"),
]


def render_markdown(report: dict) -> str:
    headers, rows = _table(report)
    out = ["# rlhf-loop report", "", *_summary(report), "", "## Iterations", ""]
    out += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    reasons = [f"- iteration {r['iteration']}: {'; '.join(r['reasons'])}" for r in report["iterations"] if r["reasons"]]
    if reasons:
        out += ["", "Gate reasons:", *reasons]
    out += ["", "Proxy scores come from each iteration's own reward model, so they compare within an iteration.", ""]
    out += [f"![{caption}]({name})\n" for name, caption in IMAGES]
    return "\n".join(out)


def render_html(report: dict) -> str:
    headers, rows = _table(report)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    images = "".join(
        f'<figure><img src="{name}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for name, c in IMAGES
    )
    summary = "".join(f"<p>{html.escape(line)}</p>" for line in _summary(report))
    style = "body{font-family:sans-serif;max-width:70em;margin:2em auto}td,th{padding:.2em .6em;border:1px solid #ccc}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>rlhf-loop report</title><style>{style}</style>"
        f"</head><body><h1>rlhf-loop report</h1>{summary}<h2>Iterations</h2><table><tr>{head}</tr>{body}</table>"
        f"{images}</body></html>"
    )


def _plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = report["iterations"]
    steps = [0] + [r["iteration"] for r in rows]
    gold = [report["initial"]["gold_mean"]] + [r["gold_mean"] for r in rows]
    first_proxy = rows[0]["proxy_mean_previous"] if rows else None
    proxy = [first_proxy] + [r["proxy_mean"] for r in rows]
    root_kl = [0.0] + [math.sqrt(max(r["kl"] or 0.0, 0.0)) for r in rows]

    figure, (by_iteration, by_kl) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, x, label in ((by_iteration, steps, "iteration (0 = initial policy)"), (by_kl, root_kl, "√KL (nats)")):
        axis.plot(x, gold, "o-", label="gold (held-out samples)")
        axis.plot(x, [p if p is not None else math.nan for p in proxy], "s--", label="proxy (reward model)")
        axis.set_xlabel(label)
        axis.set_ylabel("mean score")
        axis.legend()
    by_iteration.set_xticks(steps)
    figure.tight_layout()
    figure.savefig(out / "scores.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    x = [r["iteration"] for r in rows]
    axis.bar([i - 0.2 for i in x], [r["rm_accuracy"] or 0 for r in rows], 0.4, label="reward-model accuracy")
    axis.bar([i + 0.2 for i in x], [r["annotator_agreement"] or 0 for r in rows], 0.4, label="annotator agreement")
    axis.set_xlabel("iteration")
    axis.set_ylim(0, 1)
    axis.set_xticks(x)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "reward_model.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    colours = ["tab:green" if r["decision"] == "promote" else "tab:red" for r in rows]
    axis.bar(x, [r["rankings"] or 0 for r in rows], color=colours)
    for i, r in zip(x, rows, strict=True):
        axis.annotate(r["decision"] or "", (i, r["rankings"] or 0), ha="center", va="bottom")
    axis.set_xlabel("iteration")
    axis.set_ylabel("rankings collected")
    axis.set_xticks(x)
    figure.tight_layout()
    figure.savefig(out / "rankings.png", dpi=100)
    plt.close(figure)


def write_report(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False))
    (out / "report.md").write_text(render_markdown(report))
    (out / "report.html").write_text(render_html(report))
    _plots(report, out)
    return [out / name for name in FILES]
