"""docs/METRICS.md read back as data, and metric names pulled out of PromQL, for the monitoring tests."""

import re
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_:]+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \|")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def catalogue() -> dict[str, dict[str, tuple[str, frozenset[str]]]]:
    """{part heading: {metric: (type, labels)}}."""
    parts: dict[str, dict] = {}
    part = None
    for line in CATALOGUE.read_text().splitlines():
        if line.startswith("## "):
            part = parts.setdefault(line[3:].strip(), {})
        elif (row := ROW.match(line)) and part is not None:
            labels = frozenset(label.strip() for label in row["labels"].split(",") if label.strip())
            part[row["name"]] = (row["type"], labels)
    return parts


def all_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    return {name: entry for part in catalogue().values() for name, entry in part.items()}


def metric_names(promql: str) -> set[str]:
    """The rlhf_ metrics an expression reads (label matchers left out), histogram series mapped to their family."""
    outside_matchers = re.sub(r"\{[^}]*\}", "", promql)
    return {HISTOGRAM_SERIES.sub("", name) for name in re.findall(r"\brlhf_[a-z_]+", outside_matchers)}
