"""The three labeling configs (Ranker, bucketed Ranker, Pairwise) and the task data they read.

Task data: {"prompt": str, "candidates": [{"id": "c0", "title": "Response 1", "body": str}, ...]}
plus, for Pairwise, "answer1"/"answer2" (the two bodies: Pairwise compares Text tags).
"""

from __future__ import annotations

from dataclasses import dataclass

# Responses keep their line breaks; the candidate ids ("c0", ...) the List shows are hidden.
_STYLE = """
  <Style>
    .htx-text, [class*="list-item"] { white-space: pre-wrap; }
    [class*="itemId"], [class*="item-id"], [class*="_id"] { display: none !important; }
  </Style>"""

BUCKETS = ("best", "acceptable", "bad")


@dataclass(frozen=True)
class Template:
    name: str
    label_config: str
    buckets: tuple[str, ...] = ()  # bucketed Ranker: bucket names, best first
    pairwise: bool = False


def ranker_config(buckets: tuple[str, ...] = ()) -> str:
    bucket_tags = "".join(f'\n      <Bucket name="{b}" title="{b.capitalize()}"/>' for b in buckets)
    ranker = (
        f'<Ranker name="rank" toName="candidates">{bucket_tags}\n    </Ranker>'
        if buckets
        else '<Ranker name="rank" toName="candidates"/>'
    )
    instruction = "Sort the responses into buckets" if buckets else "Drag the responses into order, best first"
    return f"""<View>{_STYLE}
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="{instruction}"/>
  <List name="candidates" value="$candidates" title="Responses"/>
  {ranker}
</View>"""


PAIRWISE_CONFIG = f"""<View>{_STYLE}
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Which response is better?"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
  <Pairwise name="comparison" toName="answer1,answer2"/>
</View>"""

TEMPLATES = {
    "ranker": Template("ranker", ranker_config()),
    "ranker-buckets": Template("ranker-buckets", ranker_config(BUCKETS), buckets=BUCKETS),
    "pairwise": Template("pairwise", PAIRWISE_CONFIG, pairwise=True),
}


def template_of(label_config: str) -> Template:
    """Which of our templates a project's labeling config is (Label Studio sends it with /setup and /predict)."""
    if "<Pairwise" in label_config:
        return TEMPLATES["pairwise"]
    if "<Bucket" in label_config:
        return TEMPLATES["ranker-buckets"]
    return TEMPLATES["ranker"]


def candidate_data(prompt: str, bodies: list[str], template: Template, provenance: dict) -> dict:
    """Task data holding the candidates, with which policy version and sampling settings made them."""
    data = {
        "prompt": prompt,
        "candidates": [{"id": f"c{i}", "title": f"Response {i + 1}", "body": body} for i, body in enumerate(bodies)],
        "generation": provenance,
    }
    if template.pairwise:
        data["answer1"], data["answer2"] = bodies[0], bodies[1]
    return data


def ranking_result(template: Template, ids: list[str], order: list[int]) -> list[dict]:
    """An order (candidate indices, best first) as the result the UI submits for this template.

    Buckets take equal shares of the order, best first (the last takes the
    remainder); Pairwise picks the side of the first.
    """
    if template.pairwise:
        value = {"selected": "left" if order[0] == 0 else "right"}
        return [{"type": "pairwise", "from_name": "comparison", "to_name": "answer1,answer2", "value": value}]
    if template.buckets:
        share = max(1, len(order) // len(template.buckets))
        ranker: dict[str, list[str]] = {name: [] for name in template.buckets}
        for position, index in enumerate(order):
            ranker[template.buckets[min(position // share, len(template.buckets) - 1)]].append(ids[index])
    else:
        ranker = {"rank": [ids[i] for i in order]}
    return [{"type": "ranker", "from_name": "rank", "to_name": "candidates", "value": {"ranker": ranker}}]
