"""A real headless browser for page tests: Debian's chromium driven by Playwright.

Use the ``browser`` fixture (one chromium per test session) and ``new_page`` for a fresh page
that records every request it makes, so a test can say which hosts a page reached. Screenshots
go to ``artifacts`` (``ADUAN_TEST_ARTIFACTS``, default ``test-artifacts/`` in the checkout).

The browser is never downloaded: ``make test`` installs Debian's ``chromium`` when it is missing.
Without it these tests fail under CI and are skipped, saying why, elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:  # Playwright is imported when a browser test runs
    from playwright.async_api import Browser, BrowserContext, HttpCredentials, Page

CHROMIUM = Path(os.environ.get("ADUAN_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-default-apps", "--disable-extensions"]
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RecordedPage:
    page: Page
    requests: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        """``scheme://host:port`` of every request, ``data:``/``blob:`` URLs aside."""
        return {f"{p.scheme}://{p.netloc}" for p in map(urlsplit, self.requests)
                if p.scheme in {"http", "https", "ws", "wss"}}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        message = (f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                   "(apt-get install chromium), or point ADUAN_TEST_CHROMIUM at one")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS,
                                                    headless=True)
        try:
            yield launched
        finally:
            await launched.close()


NewPage = Callable[..., Awaitable[RecordedPage]]


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """Opens pages in a fresh context (own cookies and credentials); closed after the test."""
    contexts: list[BrowserContext] = []

    async def open_page(*, width: int = 1280, height: int = 900,
                        http_credentials: tuple[str, str] | None = None) -> RecordedPage:
        credentials: HttpCredentials | None = (
            {"username": http_credentials[0], "password": http_credentials[1]}
            if http_credentials else None)
        context = await browser.new_context(viewport={"width": width, "height": height},
                                            http_credentials=credentials)
        contexts.append(context)
        page = await context.new_page()
        recorded = RecordedPage(page)
        page.on("request", lambda request: recorded.requests.append(request.url))
        return recorded

    yield open_page
    for context in contexts:
        await context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    directory = Path(os.environ.get("ADUAN_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory
