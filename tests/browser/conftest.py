"""The web page in a real headless Chromium (Playwright), against the real stack.

`page` gives each test a fresh browser context and saves a screenshot of its
final state to test-artifacts/screenshots/<test name>.png. `patient_api` is a
second API and worker whose email step retries slowly (every few seconds, many
times), for tests that keep a report in flight with the SMTP server refusing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.core.browser import LAUNCH_ARGS, find_chromium
from reportflow.core.config import Settings
from reportflow.models import Backoff, RetrySchedule
from tests.conftest import FAST_BACKOFF, make_settings
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api

# The renderer's flags without its dead proxy: `--proxy-bypass-list=<-loopback>`
# sends loopback through the proxy too, so the page on 127.0.0.1 would not load.
BROWSER_ARGS = LAUNCH_ARGS  # the renderer's flags, without its dead proxy

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

# Slow enough for a page to show "trying again in N seconds", fast enough for a test.
PATIENT_EMAIL = Backoff(
    initial_seconds=3.0, coefficient=1.5, maximum_seconds=5.0, maximum_attempts=40
)


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    driver = await async_playwright().start()
    yield driver
    await driver.stop()


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    chromium = await playwright.chromium.launch(
        executable_path=find_chromium(None), args=BROWSER_ARGS, headless=True
    )
    yield chromium
    await chromium.close()


@dataclass
class Console:
    """What the page logged, for failure messages and for the polling schedule."""

    lines: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        self.lines.append(f"{message.type}: {message.text}")


@pytest.fixture
async def console() -> Console:
    return Console()


def screenshot_path(test_name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "_", test_name).strip("_")
    return SCREENSHOTS / f"{safe}.png"


@pytest.fixture
async def page(
    browser: Browser, console: Console, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    size = getattr(request, "param", None) or {"width": 1024, "height": 900}
    viewport = ViewportSize(width=int(size["width"]), height=int(size["height"]))
    context = await browser.new_context(
        viewport=viewport,
        accept_downloads=True,
        is_mobile=viewport["width"] < 500,
        has_touch=viewport["width"] < 500,
    )
    context.set_default_timeout(30_000)
    tab = await context.new_page()
    tab.on("console", console.record)
    tab.on("pageerror", lambda err: console.lines.append(f"pageerror: {err}"))
    try:
        yield tab
    finally:
        await tab.screenshot(path=screenshot_path(request.node.name), full_page=True)
        await context.close()


@pytest.fixture(scope="session")
async def patient_settings(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, settings: Settings
) -> Settings:
    """The session's database (so `make_user` users sign in), its own queue and store."""
    return make_settings(
        tmp_path_factory.mktemp("patient"),
        smtp.port,
        database_url=settings.database_url,
        retry=RetrySchedule(query=FAST_BACKOFF, render=PATIENT_EMAIL, email=PATIENT_EMAIL),
    )


@pytest.fixture(scope="session")
async def patient_api(
    patient_settings: Settings, temporal_client: Client, app_engine: AsyncEngine
) -> AsyncIterator[str]:
    """Base URL of an API whose worker keeps retrying a refused email or a failing
    render for minutes."""
    async with (
        in_process_worker(patient_settings, temporal_client),
        serve_api(patient_settings) as url,
    ):
        yield url
