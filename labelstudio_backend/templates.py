"""The three labeling configs (Ranker, bucketed Ranker, Pairwise) and the task data they read.

Task data: {"prompt": str, "candidates": [{"id": "c0", "title": "Response 1", "body": str}, ...]}
plus, for Pairwise, "answer1"/"answer2" (the two bodies: Pairwise compares Text tags).
"""

from __future__ import annotations

from dataclasses import dataclass

# What Label Studio 1.23 renders (read from its DOM and bundle): a List item (Ranker) is
# div.htx-ranker-item > div.itemTitle--… (the title), p.itemLine--… (the body), p.itemLine--… (the id);
# the id paragraph always comes last. Label Studio escapes ">" in a Style (a child combinator would void the
# rule), hence descendant selectors. The CSS-module suffixes (itemLine--J7fhn) change with every Label
# Studio build, htx-ranker-item and the order do not. A Text tag is div.lsf-richtext__container holding
# one span per line with <br> between. Responses keep their line breaks and indentation (Markdown shows as
# the plain text it is: lists stay readable), and a long unbroken token (a URL, code) wraps instead of
# widening the page.
_STYLE = """
  <Style>
    .htx-ranker-item p, .lsf-richtext__container { white-space: pre-wrap; overflow-wrap: anywhere; }
    .htx-ranker-item p:last-child { display: none; }
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


# Pairwise selects a side by a click on its Text (a second click unselects it). A tie is a separate choice:
# "Equally good" and "Both bad" both mean neither response is better, so they give no training pair;
# choosing a side and a tie at once is refused by results.py. Side by side, the names left/right are what
# the annotator sees; min-width 0 lets a column shrink below its longest token.
TIE_CHOICES_NAME = "tie"
TIE_CHOICES = {"Equally good": "g", "Both bad": "n"}  # value -> hotkey (letters Label Studio binds to nothing here)
_TIE_TAGS = "".join(f'\n    <Choice value="{value}" hotkey="{key}"/>' for value, key in TIE_CHOICES.items())
PAIRWISE_CONFIG = f"""<View>{_STYLE}
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Click the better response"/>
  <View style="display: grid; grid-template-columns: 1fr 1fr; gap: 16px">
    <View style="min-width: 0">
      <Header value="Left" size="5"/>
      <Text name="answer1" value="$answer1"/>
    </View>
    <View style="min-width: 0">
      <Header value="Right" size="5"/>
      <Text name="answer2" value="$answer2"/>
    </View>
  </View>
  <Pairwise name="comparison" toName="answer1,answer2"/>
  <Header value="Or, when neither is better" size="5"/>
  <Choices name="{TIE_CHOICES_NAME}" toName="answer1" choice="single" showInline="true">{_TIE_TAGS}
  </Choices>
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
