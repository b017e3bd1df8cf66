"""What a person does on the report page, as steps the browser tests share."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from playwright.async_api import Locator, Page, expect

from tests.conftest import User

# The report page's end states can take a while on a busy machine (Chromium renders the PDF).
REPORT_TIMEOUT_MS = 60_000


async def sign_in(page: Page, api_url: str, user: User, query: str = "") -> None:
    """Open the page and sign in with the user's token, through the form."""
    await page.goto(f"{api_url}/{query}")
    await page.get_by_label("Access token").fill(user.token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="New report")).to_be_visible()


def generate_button(page: Page) -> Locator:
    return page.locator("#generate-button")


def report_card(page: Page) -> Locator:
    return page.locator("#report")


async def wait_for_status(page: Page, status: str, timeout: int = REPORT_TIMEOUT_MS) -> None:
    await expect(report_card(page)).to_have_attribute("data-status", status, timeout=timeout)


async def wait_for_stage(page: Page, stage: str, timeout: int = REPORT_TIMEOUT_MS) -> None:
    await expect(report_card(page)).to_have_attribute("data-stage", stage, timeout=timeout)


async def page_state(page: Page) -> dict[str, Any]:
    """`window.reportflow`: the polling schedule, the transport, what the page saw."""
    state: dict[str, Any] = await page.evaluate("() => ({...window.reportflow, config: undefined})")
    return state


def report_id_in_url(page: Page) -> str:
    ids = parse_qs(urlparse(page.url).query).get("report", [])
    assert len(ids) == 1, page.url
    return ids[0]
