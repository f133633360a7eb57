"""The annotator-quality report as a text table: one row per annotator, then the whole store's."""

from __future__ import annotations

from labelstudio_backend.annotator_quality import AnnotatorQuality, QualityReport, Share


def render_table(report: QualityReport, project: int | None = None) -> str:
    """One row per annotator, then the whole store's row; every share as `share [low-high] n`."""
    scope = f"project {project}" if project is not None else "all projects"
    model = f"reward model {report.reward_version}" if report.reward_version else "no reward model (--reward-url)"
    lines = [
        f"{scope}: {report.annotations} annotations by {report.annotators} annotators on {report.tasks} tasks, "
        f"{report.pairs} ordered pairs; {model}",
        "shares: value [95% Wilson interval] n (pairs or rankings); first-best: first-shown candidate in the best "
        "tier, against chance",
        "",
    ]
    header = ["annotator", "annotations", "agreement", "vs majority", "vs reward", "median s", "total s",
              "pre-ranked", "untouched", "mean dist", "first-best", "chance"]  # fmt: skip
    rows = [_cells(a.annotator, a) for a in report.per_annotator]
    rows.append(_cells("(all)", report))
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    for line in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cells(name: str, figures: AnnotatorQuality | QualityReport) -> list[str]:
    """An annotator's figures, or the store's: both carry the same fields."""
    predictions, bias = figures.predictions, figures.position_bias
    return [
        name,
        str(figures.annotations),
        _share(figures.agreement),
        _share(figures.majority_agreement),
        _share(figures.reward_agreement) if figures.reward_agreement is not None else "-",
        _number(figures.lead_time.median_s, 1),
        _number(figures.lead_time.total_s, 0),
        str(predictions.from_prediction),
        str(predictions.untouched),
        _number(predictions.mean_distance, 2),
        _share(bias.first_in_best),
        _number(bias.chance, 2),
    ]


def _share(share: Share) -> str:
    if share.share is None:
        return "- n=0"
    return f"{share.share:.2f} [{share.low:.2f}-{share.high:.2f}] n={share.n}"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
