"""The page's scheduled-reports section in headless Chromium against the real stack."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.page_actions import sign_in
from tests.conftest import MakeUser

pytestmark = [pytest.mark.browser]


async def test_add_pause_resume_and_delete_a_schedule(
    page: Page, api_url: str, make_user: MakeUser
) -> None:
    user = await make_user()
    await sign_in(page, api_url, user)
    section = page.locator("#schedules")
    await expect(section.get_by_role("heading", name="Scheduled reports")).to_be_visible()

    # A time zone the server does not know: its sentence, nothing created.
    await section.get_by_label("Time zone").fill("Mars/Olympus")
    await section.get_by_role("button", name="Add schedule").click()
    await expect(page.locator("#schedule-error")).to_contain_text("unknown time zone")
    await expect(page.locator("#schedule-list li")).to_have_count(0)

    await section.get_by_label("Every").select_option("month")
    await expect(section.get_by_label("Day")).to_have_value("1")
    await section.get_by_label("Time zone").fill("Europe/Berlin")
    await section.get_by_role("button", name="Add schedule").click()
    item = page.locator("#schedule-list li")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("Every month on 1 at 06:00 Europe/Berlin")
    await expect(page.locator("#schedule-error")).to_be_hidden()

    await item.get_by_role("button", name="Pause").click()
    await expect(item).to_contain_text("(paused)")
    await item.get_by_role("button", name="Resume").click()
    await expect(item).not_to_contain_text("(paused)")
    await item.get_by_role("button", name="Delete").click()
    await expect(page.locator("#schedule-list li")).to_have_count(0)
