"""What an annotator does in Label Studio's labeling UI, in Playwright: log in, open the queue, drag, click, submit.

Selectors are the ones Label Studio 1.23 renders (checked in its DOM): the
bottom bar's data-testid buttons, List items as `.htx-ranker-item` with
`data-ranker-id`, Ranker columns as react-beautiful-dnd droppables.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

CHROMIUM = Path("/usr/bin/chromium")
# Headless Debian chromium with nothing that phones home: without the background-networking flags it keeps
# retrying Google services on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}  # a laptop: the width docs/annotating.md promises no sideways scroll at
SCREENSHOTS_ENV = "RLHF_LOOP_SCREENSHOTS"  # a folder: the tests save each template's screenshot there (docs/images)


def log_in(page: Page, base_url: str, email: str, password: str) -> None:
    """Through the login form, as a person does."""
    page.goto(f"{base_url}/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)


def open_queue(page: Page, base_url: str, project_id: int) -> Locator:
    """The project's "Label All Tasks" queue; returns the instructions dialog Label Studio opens over the first task."""
    page.goto(f"{base_url}/projects/{project_id}/data")
    page.get_by_role("button", name="Label All Tasks").click()
    dialog = page.locator(".lsf-modal-ls__content").filter(has_text="Labeling Instructions")
    expect(dialog).to_be_visible()
    return dialog


def close_instructions(page: Page, dialog: Locator) -> None:
    dialog.get_by_role("button", name="Close modal").click()
    expect(dialog).to_be_hidden()


def item(page: Page, candidate_id: str) -> Locator:
    return page.locator(f'.htx-ranker-item[data-ranker-id="{candidate_id}"]')


def drag(page: Page, source: Locator, target: Locator) -> None:
    """A mouse drag as react-beautiful-dnd needs it: press, move past its 5 px threshold, glide, drop on the
    top of `target` (an item: in front of it; a column's drop area: first in it)."""
    s, t = source.bounding_box(), target.bounding_box()
    assert s and t, "source and target must be on screen"
    page.mouse.move(s["x"] + s["width"] / 2, s["y"] + 15)
    page.mouse.down()
    page.mouse.move(s["x"] + s["width"] / 2, s["y"] + 25, steps=5)
    page.mouse.move(t["x"] + t["width"] / 2, t["y"] + 10, steps=10)
    page.mouse.up()


def move_up_with_keys(page: Page, card: Locator, places: int) -> None:
    """react-beautiful-dnd's keyboard dragging (docs/annotating.md): Space lifts, arrows move, Space drops."""
    card.focus()
    page.keyboard.press("Space")
    for _ in range(places):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("Space")


def expect_order(page: Page, column: str, ids: list[str]) -> None:
    """Wait until the column (the Ranker's name, or a bucket's) shows exactly these items, top to bottom."""
    page.wait_for_function(
        """([column, ids]) => [...document.querySelectorAll(`[data-rbd-droppable-id="${column}"] .htx-ranker-item`)]
             .map(e => e.dataset.rankerId).join() === ids""",
        arg=[column, ",".join(ids)],
    )


def bottom_bar(page: Page, button: str) -> Locator:
    """submit, update or skip."""
    return page.get_by_test_id(f"bottombar-{button}-button")


def wait_for_task(page: Page, prompt: str) -> None:
    """The queue moved on: the task with this prompt is open and ready."""
    expect(page.locator(".lsf-richtext__container").first).to_have_text(prompt)


def screenshot(target: Page | Locator, name: str) -> None:
    """The page (or one element of it) as <$RLHF_LOOP_SCREENSHOTS>/<name>.png when the variable is set
    (`make screenshots`)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target.screenshot(path=Path(folder) / f"{name}.png")
