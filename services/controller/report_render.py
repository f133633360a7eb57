"""The loop's report as files: report.json, report.md, report.html and the plots (PNG, via matplotlib)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

FILES = ("report.json", "report.md", "report.html", "scores.png", "reward_model.png", "rankings.png")
COLUMNS = [
    ("iteration", "iteration", "{}"), ("rankings", "rankings", "{}"),
    ("from_prediction", "from a pre-ranking", "{}"), ("untouched_prerankings", "pre-ranking untouched", "{}"),
    ("rm_untouched_excluded", "untouched, not trained on", "{}"),
    ("annotator_agreement", "annotator agreement", "{:.3f}"), ("rm_heldout_pairs", "RM held-out pairs", "{}"),
    ("rm_accuracy", "new RM accuracy", "{:.3f}"), ("rm_active_accuracy", "active RM accuracy", "{:.3f}"),
    ("rm_agreement", "agreement on them", "{:.3f}"), ("rm_accuracy_vs_annotators", "new RM / agreement", "{:.2f}"),
    ("reward_promoted", "RM promoted", "{}"), ("rm_gold_accuracy", "RM vs gold (fixed set)", "{:.3f}"),
    ("proxy_win_rate_vs_previous", "proxy win vs prev", "{:.3f}"),
    ("gold_win_rate_vs_previous", "gold win vs prev", "{:.3f}"),
    ("human_win_rate_vs_previous", "people win vs prev", "{:.3f}"), ("kl", "KL", "{:.3f}"),
    ("proxy_mean", "proxy mean", "{:.3f}"), ("gold_mean", "gold mean", "{:.3f}"),
    ("distinct_1", "distinct-1", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
    ("decision", "decision", "{}"), ("seconds", "seconds", "{:.0f}"),
]  # fmt: skip
IMAGES = [
    ("scores.png", "Gold and proxy score per iteration, and against √KL"),
    (
        "reward_model.png",
        "Reward models: new vs active on each round's held-out comparisons, next to the "
        "annotators' agreement on them; and every round's model against the gold on one fixed set",
    ),
    ("rankings.png", "Rankings collected per iteration, and the decision"),
]


def _json_safe(value):
    """NaN and infinities (e.g. no annotator pairs to agree on) become null: report.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _cell(value, form: str) -> str:
    """A table cell: the formatted value, or n/a where there is none."""
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else form.format(value)


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    """The iterations table's headers and rows."""
    headers = [title for _, title, _ in COLUMNS]
    rows = [[_cell(r.get(key), form) for key, _, form in COLUMNS] for r in report["iterations"]]
    return headers, rows


def _summary(report: dict) -> list[str]:
    """The report's headline sentences."""
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
        _gold_set_line(report),
        *_judges_lines(report),
        f"{len(report['iterations'])} iterations: {report['promotions']} promoted, {report['rollbacks']} rolled back; "
        f"wall time {report['wall_time_s']:.0f} s.",
    ]
    met = report["targets_met"]
    lines.append("Targets: " + ", ".join(f"{k} {'met' if met[k] else 'MISSED'}" for k in met) + ".")
    return lines


def _gold_set_line(report: dict) -> str:
    """Every round's reward model on the fixed gold set, base first."""
    models = report["reward_models_on_gold_set"]
    if not models:
        return "Reward models on a fixed gold set: not measured."
    figures = ", ".join(f"{m['version']} {_cell(m['accuracy'], '{:.3f}')}" for m in models)
    return f"Reward models against the gold on one fixed set of {models[0]['pairs']} pairs: {figures}."


def _judges_lines(report: dict) -> list[str]:
    """Where people judged the policy: how often proxy, people and gold picked the same answer."""
    lines = []
    for r in report["iterations"]:
        agreement = r.get("judges_agreement")
        if agreement:
            pairs = ", ".join(f"{k.replace('_', ' vs ')} {_cell(v, '{:.2f}')}" for k, v in agreement.items())
            lines.append(f"Iteration {r['iteration']}, judges on the evaluation tasks agree: {pairs}.")
    return lines


def _policies_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Every sampled policy by the serving reward model: proxy, conservative and gold side by side."""
    lam = report.get("conservative_lambda", 1.0)
    headers = ["policy", "proxy mean", f"conservative (mean - {lam:g} x spread)", "ensemble spread", "gold mean"]
    rows = [[r["version"], *(_cell(r[k], "{:.3f}") for k in ("proxy", "conservative", "spread", "gold"))]
            for r in report.get("policies_by_serving_reward_model", [])]  # fmt: skip
    return headers, rows


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def render_markdown(report: dict) -> str:
    """report.md: the summary, the iterations table, the gate reasons and the plots."""
    out = ["# rlhf-loop report", "", *_summary(report), "", "## Iterations", "", *_markdown_table(*_table(report))]
    headers, rows = _policies_table(report)
    if rows:
        out += ["", "## Policies by the serving reward model", "", *_markdown_table(headers, rows)]
    reasons = [f"- iteration {r['iteration']}: {'; '.join(r['reasons'])}" for r in report["iterations"] if r["reasons"]]
    if reasons:
        out += ["", "Gate reasons:", *reasons]
    out += ["", "Proxy scores come from each iteration's own reward model, so they compare within an iteration.", ""]
    out += [f"![{caption}]({name})\n" for name, caption in IMAGES]
    return "\n".join(out)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict) -> str:
    """report.html: the summary, the iterations table and the plots on one page."""
    iterations = _html_table(*_table(report))
    headers, rows = _policies_table(report)
    policies = f"<h2>Policies by the serving reward model</h2>{_html_table(headers, rows)}" if rows else ""
    images = "".join(
        f'<figure><img src="{name}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for name, c in IMAGES
    )
    summary = "".join(f"<p>{html.escape(line)}</p>" for line in _summary(report))
    style = "body{font-family:sans-serif;max-width:70em;margin:2em auto}td,th{padding:.2em .6em;border:1px solid #ccc}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>rlhf-loop report</title><style>{style}</style>"
        f"</head><body><h1>rlhf-loop report</h1>{summary}<h2>Iterations</h2>{iterations}{policies}"
        f"{images}</body></html>"
    )


def _pyplot():
    """matplotlib's pyplot drawing to files only; imported when a report is written, not when the loop starts."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _plot_scores(report: dict, path: Path) -> None:
    """Gold and proxy mean against the iteration and against √KL."""
    plt = _pyplot()
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
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_reward_model(report: dict, path: Path) -> None:
    """Per round: the new and the active reward model and the annotators on the same pairs; the fixed gold set."""
    plt = _pyplot()
    rows = report["iterations"]
    figure, (gate, fixed) = plt.subplots(1, 2, figsize=(11, 4))
    x = [r["iteration"] for r in rows]
    bars = (("rm_accuracy", "new reward model"), ("rm_active_accuracy", "active reward model"),
            ("rm_agreement", "annotators' agreement"))  # fmt: skip
    for offset, (key, label) in zip((-0.27, 0.0, 0.27), bars, strict=True):
        gate.bar([i + offset for i in x], [r[key] or 0 for r in rows], 0.27, label=label)
    gate.set_title("each round's held-out comparisons")
    gate.set_xlabel("iteration")
    gate.set_ylim(0, 1)
    gate.set_xticks(x)
    gate.legend(fontsize="small")
    models = report["reward_models_on_gold_set"]
    fixed.plot(range(len(models)), [m["accuracy"] for m in models], "o-")
    fixed.set_xticks(range(len(models)), [m["version"] for m in models], rotation=30)
    fixed.set_title("one fixed gold-labelled set")
    fixed.set_ylabel("accuracy against the gold")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_rankings(report: dict, path: Path) -> None:
    """Rankings collected per iteration, coloured and labelled by the decision."""
    plt = _pyplot()
    rows = report["iterations"]
    figure, axis = plt.subplots(figsize=(6, 4))
    x = [r["iteration"] for r in rows]
    colours = ["tab:green" if r["decision"] == "promote" else "tab:red" for r in rows]
    axis.bar(x, [r["rankings"] or 0 for r in rows], color=colours)
    for i, r in zip(x, rows, strict=True):
        axis.annotate(r["decision"] or "", (i, r["rankings"] or 0), ha="center", va="bottom")
    axis.set_xlabel("iteration")
    axis.set_ylabel("rankings collected")
    axis.set_xticks(x)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(report: dict, out: Path) -> list[Path]:
    """Write every file of the report into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False))
    (out / "report.md").write_text(render_markdown(report))
    (out / "report.html").write_text(render_html(report))
    _plot_scores(report, out / "scores.png")
    _plot_reward_model(report, out / "reward_model.png")
    _plot_rankings(report, out / "rankings.png")
    return [out / name for name in FILES]
