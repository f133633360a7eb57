"""The annotators' side in a real browser: each template used as a person uses it, and the store holding exactly that.

Real Label Studio, the backend as a process, a real annotator account logged
in through the login page, Debian's chromium. After each action the
preference store is polled until the webhook has landed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
from playwright.sync_api import Locator, Page, expect

from labelstudio_backend.project_setup import init_project, project_pre_rank
from labelstudio_backend.templates import TEMPLATES, candidate_data
from services.core.env import LABELSTUDIO_TOKEN_ENV
from tests.browser.labeling import (
    bottom_bar,
    close_instructions,
    drag,
    expect_order,
    item,
    move_up_with_keys,
    open_queue,
    screenshot,
    wait_for_task,
)
from tests.labelstudio_backend.test_labelstudio_backend import wait_until

pytestmark = pytest.mark.integration

# A response a model really writes: Markdown it means as formatting, line breaks, and an unbroken token
# (a URL) far wider than the page.
LONG_RESPONSE = (
    "Basil wants three things:\n\n"
    "- **Light**: six hours of sun; a south-facing window is best.\n"
    "- **Water**: when the top 2 cm of soil is dry, water until it drains.\n"
    "- **Pinching**: pinch the tips above a pair of leaves so it grows bushy.\n"
    "  - never let it flower\n\n"
    "Care sheet: https://example.org/herbs/basil/" + "windowsill-care-guide-" * 14 + "\n"
    "Good luck!"
)
RANKER_TASKS = [
    ("How do I keep a basil plant alive on a windowsill?", [
        LONG_RESPONSE,
        "Water it every day and keep it away from the light.",
        "Give it your sunniest window, water when the topsoil is dry, and pinch the tips so it grows bushy.",
        "Basil is a herb.",
    ]),
    ("Suggest a name for a grey cat.", ["Smokey", "Cat", "Ash, or Pebble if she is small.", "Grey Cat 2"]),
]  # fmt: skip
BUCKET_TASKS = [
    ("Explain a leap year in one sentence.", [
        "A year of 365 days.",
        "A year with an extra day, 29 February, added about every four years to keep the calendar in step "
        "with the Earth's orbit.",
        "Every fourth year gets a 29 February so the calendar keeps up with the seasons.",
        "Un año bisiesto tiene 366 días.",  # left unsorted: the annotator does not read Spanish
        "A year that has one more day than usual.",
    ]),
    ("xq zzv !!! ??? lorem qwop", ["What?", "I cannot tell what you are asking.", "Yes.", "42", "Lorem."]),
]  # fmt: skip
PAIRWISE_TASKS = [
    ("Translate 'good morning' into French.", ["Bonsoir.", "Bonjour."]),
    ("What is 2 + 2?", ["4", "Four."]),
    ("Write a haiku about rain.", ["Rain is wet.", "Rain rain rain rain rain."]),
]


def make_project(admin, backend, template: str, tasks: list[tuple[str, list[str]]], **options) -> int:
    setup = init_project(admin, template=template, title=f"browser {template}", backend_url=backend.url, **options)
    data = [
        candidate_data(prompt, bodies, TEMPLATES[template], {"policy_version": "browser"}) for prompt, bodies in tasks
    ]
    admin.projects.import_tasks(setup.project_id, request=data, return_task_ids=True)
    return setup.project_id


def stored(backend, project_id: int) -> dict[int, tuple[frozenset[int], ...]]:
    """{annotation id: tiers, each a set (members of a tier tie, their order means nothing)}."""
    return {p.annotation_id: tuple(frozenset(t) for t in p.ranking.tiers) for p in backend.store.all(project_id)}


def tiers(*groups: tuple[int, ...]) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(g) for g in groups)


def store_becomes(backend, project_id: int, wanted: dict) -> None:
    wait_until(lambda: stored(backend, project_id) == wanted, 30, f"the store to hold {wanted}")


def store_counts(backend, project_id: int, count: int) -> dict:
    """Wait until the project has `count` rankings in the store; returns them."""
    return wait_until(lambda: s if len(s := stored(backend, project_id)) == count else None, 30, f"{count} rankings")


def webhooks_handled(backend, action: str, outcome: str) -> float:
    """How many webhooks of this action the backend has handled with this outcome (its /metrics)."""
    metrics = urllib.request.urlopen(f"{backend.url}/metrics", timeout=10).read().decode()
    line = re.search(rf'^rlhf_backend_webhooks_total{{action="{action}",outcome="{outcome}"}} (\S+)$', metrics, re.M)
    return float(line.group(1)) if line else 0.0


def test_ranker_from_the_instructions_to_a_skip(page: Page, labelstudio, admin, backend):
    """Instructions before the first task; readable responses without ids; drag, submit, update, skip."""
    project = make_project(admin, backend, "ranker", RANKER_TASKS)
    dialog = open_queue(page, labelstudio.url, project)
    for quality in ("Harmless", "Honest", "Helpful", "On topic", "Ties", "Skip"):
        expect(dialog).to_contain_text(quality)
    screenshot(dialog, "instructions")
    close_instructions(page, dialog)

    prompt, bodies = RANKER_TASKS[0]
    wait_for_task(page, prompt)
    for i, body in enumerate(bodies):
        expect(item(page, f"c{i}")).to_contain_text(body.splitlines()[0])
        # The id paragraph is there but hidden; the text "c0".. is nowhere to be seen.
        expect(page.locator(".htx-ranker-item").get_by_text(f"c{i}", exact=True)).to_be_hidden()
    long_body = item(page, "c0").locator("p").first
    text = long_body.inner_text()  # innerText follows the CSS: collapsed line breaks would be spaces here
    assert "three things:\n\n- **Light**" in text and "\n  - never let it flower" in text
    assert long_body.locator("li, strong, ul").count() == 0  # Markdown shown as the text it is
    assert long_body.bounding_box()["height"] > 10 * 16  # the lines, and the URL wrapped onto several more
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    overflowing = page.evaluate(
        "[...document.querySelectorAll('.lsf-main-view, .htx-ranker-item, .htx-ranker-item p')]"
        ".filter(e => e.scrollWidth > e.clientWidth).length"
    )
    assert overflowing == 0, "no clipped or sideways-scrolling response"

    drag(page, item(page, "c2"), item(page, "c0"))
    expect_order(page, "rank", ["c2", "c0", "c1", "c3"])
    screenshot(page, "ranker")
    bottom_bar(page, "submit").click()
    (annotation,) = store_counts(backend, project, 1)
    assert stored(backend, project) == {annotation: tiers((2,), (0,), (1,), (3,))}

    wait_for_task(page, RANKER_TASKS[1][0])
    page.get_by_role("button", name="Previous task").click()
    wait_for_task(page, prompt)
    expect_order(page, "rank", ["c2", "c0", "c1", "c3"])  # the submitted order, to change
    move_up_with_keys(page, item(page, "c3"), 3)  # this time with the keyboard
    expect_order(page, "rank", ["c3", "c2", "c0", "c1"])
    bottom_bar(page, "update").click()
    store_becomes(backend, project, {annotation: tiers((3,), (2,), (0,), (1,))})

    # Skipping a submitted task cancels its annotation: the ranking leaves the store.
    bottom_bar(page, "skip").click()
    store_becomes(backend, project, {})
    cancelled = admin.annotations.get(id=annotation)
    assert cancelled.was_cancelled


def test_buckets_tie_their_members_and_a_skipped_task_stores_nothing(page: Page, labelstudio, admin, backend):
    """Two responses into Best, one each into Acceptable and Bad, one left unsorted; then a skip."""
    project = make_project(admin, backend, "ranker-buckets", BUCKET_TASKS)
    close_instructions(page, open_queue(page, labelstudio.url, project))
    wait_for_task(page, BUCKET_TASKS[0][0])
    # c3 stays unsorted: the annotator cannot judge it, and unsorted is unranked (no pairs), not "worst".
    for candidate, bucket in (("c1", "best"), ("c2", "best"), ("c4", "acceptable"), ("c0", "bad")):
        column = page.locator(f'[data-rbd-droppable-id="{bucket}"]')
        drag(page, item(page, candidate), column)
        expect(column.locator(f'[data-ranker-id="{candidate}"]')).to_be_visible()
    expect_order(page, "_", ["c3"])
    screenshot(page, "ranker-buckets")
    bottom_bar(page, "submit").click()
    (annotation,) = store_counts(backend, project, 1)
    assert stored(backend, project) == {annotation: tiers((1, 2), (4,), (0,))}

    ignored = webhooks_handled(backend, "ANNOTATION_CREATED", "ignored")
    wait_for_task(page, BUCKET_TASKS[1][0])  # unreadable: skipped, as the instructions say
    bottom_bar(page, "skip").click()
    wait_until(lambda: webhooks_handled(backend, "ANNOTATION_CREATED", "ignored") > ignored, 30, "the skip's webhook")
    (task,) = [t for t in admin.tasks.list(project=project, fields="all") if t.data["prompt"] == BUCKET_TASKS[1][0]]
    assert [a["was_cancelled"] for a in task.annotations] == [True]
    assert stored(backend, project) == {annotation: tiers((1, 2), (4,), (0,))}


def test_pairwise_side_tie_by_hotkey_and_a_side_updated_to_a_tie(page: Page, labelstudio, admin, backend, tmp_path):
    """Instructions from a text file via the CLI; a side; "Equally good" by hotkey; a side changed to "Both bad"."""
    project = make_project(admin, backend, "pairwise", PAIRWISE_TASKS)
    # Instructions from a plain-text file through the CLI: escaped, its line breaks kept.
    notes = tmp_path / "instructions.txt"
    notes.write_text("Prefer the <correct> answer.\nThen the shorter one.\n\nSkip what you cannot read.")
    init = subprocess.run(
        [sys.executable, "-m", "services.cli", "project", "init", "--template", "pairwise", "--title",
         "browser pairwise", "--backend-url", backend.url, "--instructions", str(notes),
         "--labelstudio-url", labelstudio.url],
        capture_output=True, text=True, env={**os.environ, LABELSTUDIO_TOKEN_ENV: labelstudio.token},
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["created"] == ["instructions"]
    dialog = open_queue(page, labelstudio.url, project)
    expect(dialog).to_contain_text("Prefer the <correct> answer.")
    assert "answer.\nThen" in dialog.locator("p").first.inner_text()
    close_instructions(page, dialog)

    def answer(side: int) -> Locator:
        return page.locator(".lsf-richtext__container").nth(1 + side).locator("..")  # 0 is the prompt

    def open_pair(prompt: str) -> None:
        wait_for_task(page, prompt)
        # Pairwise makes both answers clickable once the task is attached (a tick after it shows).
        for side in (0, 1):
            expect(answer(side)).to_have_class(re.compile("cursor-pointer"))

    open_pair(PAIRWISE_TASKS[0][0])
    answer(1).click()
    expect(answer(1)).to_have_class(re.compile("bg-primary-background"))  # selected
    screenshot(page, "pairwise")
    bottom_bar(page, "submit").click()
    (first,) = store_counts(backend, project, 1)
    assert stored(backend, project) == {first: tiers((1,), (0,))}

    open_pair(PAIRWISE_TASKS[1][0])
    page.keyboard.press("g")  # "Equally good"
    expect(page.get_by_role("checkbox", name="Equally good")).to_be_checked()
    page.keyboard.press("Control+Enter")  # Label Studio's submit
    (second,) = set(store_counts(backend, project, 2)) - {first}
    assert stored(backend, project)[second] == tiers((0, 1))

    # Back to the first: the side clicked again is unselected, "Both bad" chosen instead, updated by hotkey.
    open_pair(PAIRWISE_TASKS[2][0])
    for prompt in (PAIRWISE_TASKS[1][0], PAIRWISE_TASKS[0][0]):
        page.get_by_role("button", name="Previous task").click()
        open_pair(prompt)
    expect(answer(1)).to_have_class(re.compile("bg-primary-background"))
    answer(1).click()
    expect(answer(1)).not_to_have_class(re.compile("bg-primary-background"))
    page.get_by_text("Both bad").click()
    expect(bottom_bar(page, "update")).to_be_visible()
    page.keyboard.press("Control+Enter")  # on a submitted task, the same key updates
    store_becomes(backend, project, {first: tiers((0, 1)), second: tiers((0, 1))})


def test_project_init_updates_instructions_pre_rank_and_the_ml_connection_in_place(admin, backend):
    """No browser: what `project init` leaves in Label Studio, on a new project and an existing one."""
    options = {"template": "ranker", "title": "browser settings", "backend_url": backend.url, "candidates": 3}
    setup = init_project(admin, **options)
    assert project_pre_rank(admin, setup.project_id) == 0.0
    assert admin.projects.get(id=setup.project_id).show_collab_predictions is False  # Label Studio's default: on
    assert init_project(admin, **options).created == ()
    changed = init_project(admin, **options, instructions="<p>Only kindness counts.</p>", pre_rank=0.25)
    assert changed.created == ("instructions", "pre-rank", "ml_backend settings")
    project = admin.projects.get(id=setup.project_id)
    assert (project.expert_instruction, project.show_instruction) == ("<p>Only kindness counts.</p>", True)
    assert project.show_collab_predictions is True and project_pre_rank(admin, setup.project_id) == 0.25
    assert admin.ml.get(id=setup.ml_backend_id).extra_params == {"candidates": 3, "pre_rank": 0.25}
    # HTML that Label Studio cleans (it drops style attributes) is stored once, then left alone.
    styled = {**options, "instructions": '<p style="color: red">Only kindness counts.</p>', "pre_rank": 0.25}
    assert init_project(admin, **styled).created == ()  # cleaned, it is what is stored already
    # A connection made before --pre-rank existed: the project's "show predictions" decides.
    admin.ml.update(id=setup.ml_backend_id, project=setup.project_id, url=backend.url, auth_method="NONE",
                    extra_params={"candidates": 3})  # fmt: skip
    assert project_pre_rank(admin, setup.project_id) == 1.0
    # A project made by an older release (its Style matched nothing) gets this release's labeling config.
    old_config = TEMPLATES["ranker"].label_config.replace(".htx-ranker-item p:last-child", "[class*=_id]")
    admin.projects.update(id=setup.project_id, label_config=old_config)
    assert "labeling config" in init_project(admin, **options, pre_rank=0.25).created
    assert admin.projects.get(id=setup.project_id).label_config == TEMPLATES["ranker"].label_config
