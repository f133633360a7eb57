"""A real Label Studio, the backend on the tiny reward model, a real annotator account and Debian's chromium."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from label_studio_sdk import LabelStudio
from playwright.sync_api import Browser, Page, sync_playwright

from labelstudio_backend.annotators import create_annotator
from labelstudio_backend.preference_store import PreferenceStore
from services.tools.local_stack import LocalStack
from tests.browser.labeling import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, log_in

ANNOTATOR_EMAIL, ANNOTATOR_PASSWORD = "browser-annotator@example.com", "pass-word-123"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and pytest-asyncio's tests after it would then fail to start theirs."""
    assert CHROMIUM.is_file(), "chromium is installed by `make test` (Debian package chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def backend(labelstudio, tiny_model_dir, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """The backend and the reward service it asks (Label Studio's /setup needs it); no policy service: the
    tests import tasks with their candidates, and open projects without pre-ranking."""
    root = tmp_path_factory.mktemp("browser-stack")
    stack = LocalStack(root)
    store_url = f"sqlite:///{root / 'prefs.db'}"
    try:
        stack.reward(str(tiny_model_dir))
        process = stack.backend(store_url)
        yield SimpleNamespace(url=process.http, store=PreferenceStore(store_url))
    finally:
        stack.close()


@pytest.fixture(scope="module")
def admin(labelstudio) -> LabelStudio:
    return LabelStudio(base_url=labelstudio.url, api_key=labelstudio.token)


@pytest.fixture(scope="session")
def annotator(labelstudio) -> tuple[str, str]:
    """(email, password) of a real account, signed up through the organisation's invite link."""
    create_annotator(labelstudio.url, labelstudio.token, ANNOTATOR_EMAIL, ANNOTATOR_PASSWORD)
    return ANNOTATOR_EMAIL, ANNOTATOR_PASSWORD


@pytest.fixture(scope="module")
def annotator_session(chromium, labelstudio, annotator) -> dict:
    """Logged in once through the login page; the session cookie is what each test's browser starts with."""
    context = chromium.new_context(viewport=VIEWPORT)
    log_in(context.new_page(), labelstudio.url, *annotator)
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(chromium, annotator_session) -> Iterator[Page]:
    """A fresh browser context (nothing remembered but the login) as the annotator."""
    context = chromium.new_context(viewport=VIEWPORT, storage_state=annotator_session)
    yield context.new_page()
    context.close()
