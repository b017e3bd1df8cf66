"""The page's scheduled-reports section in headless Chromium against the real stack."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from reportflow.contract import LAST_MONTH_DAY, WEEKDAYS
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

    # The server's own sentence for a zone it does not know: a browser's zone list
    # (ICU's) can be newer than the server's tzdata. Nothing is created.
    zone = section.get_by_label("Time zone")
    await zone.evaluate("(select) => select.add(new Option('Mars/Olympus', 'Mars/Olympus'))")
    await zone.select_option("Mars/Olympus")
    await section.get_by_role("button", name="Add schedule").click()
    await expect(page.locator("#schedule-error")).to_contain_text("unknown time zone")
    await expect(page.locator("#schedule-list li")).to_have_count(0)

    await section.get_by_label("Every").select_option("month")
    await expect(section.get_by_label("Weekday")).to_be_hidden()
    await expect(section.get_by_label("Day of month")).to_have_value("1")
    await expect(page.locator("#schedule-help")).to_contain_text("not every month has")
    await zone.select_option("Europe/Berlin")
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


async def test_weekly_on_a_weekday_in_a_listed_zone_defaulting_to_the_browsers(
    browser: Browser, api_url: str, make_user: MakeUser
) -> None:
    user = await make_user()
    # A browser in Tokyo: the form offers its zone first-hand.
    context = await browser.new_context(timezone_id="Asia/Tokyo")
    context.set_default_timeout(30_000)
    try:
        page = await context.new_page()
        await sign_in(page, api_url, user)
        section = page.locator("#schedules")
        every, weekday = section.get_by_label("Every"), section.get_by_label("Weekday")
        month_day, zone = section.get_by_label("Day of month"), section.get_by_label("Time zone")

        # Every control is a choice, and offers what the API accepts.
        await expect(weekday).to_be_visible()
        await expect(month_day).to_be_hidden()
        await expect(page.locator("#schedule-help")).to_be_hidden()
        values = "os => os.map(o => o.value)"
        assert await weekday.locator("option").evaluate_all(values) == WEEKDAYS
        days = await month_day.locator("option").evaluate_all(values)
        assert days == [str(d) for d in range(1, LAST_MONTH_DAY + 1)]
        zones = await zone.locator("option").evaluate_all(values)
        assert zones[0] == "UTC" and {"Europe/Berlin", "America/New_York"} <= set(zones)
        await expect(zone).to_have_value("Asia/Tokyo")
        # "Every" is styled like the other controls (the page's own border, not the UA's).
        styles = "e => [getComputedStyle(e).borderTopColor, getComputedStyle(e).borderRadius]"
        time_style = await section.get_by_label("At").evaluate(styles)
        assert await every.evaluate(styles) == time_style
        assert await zone.evaluate(styles) == time_style

        await every.select_option("month")
        await expect(weekday).to_be_hidden()
        await every.select_option("week")
        await expect(month_day).to_be_hidden()
        await weekday.select_option("wednesday")
        await section.get_by_label("At").fill("07:30")
        await zone.select_option("America/New_York")
        await section.get_by_role("button", name="Add schedule").click()
        item = section.locator("#schedule-list li")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text("Every week on wednesday at 07:30 America/New_York")
    finally:
        await context.close()

    # What the API then lists: the choices made on the page. The list is read from
    # Temporal's visibility store, which may lag a moment behind the create.
    headers = {"Authorization": f"Bearer {user.token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as http, asyncio.timeout(15):
        while not (listed := (await http.get("/schedules")).raise_for_status().json()):
            await asyncio.sleep(0.2)
    assert [(s["every"], s["day"], s["time"], s["timezone"]) for s in listed] == [
        ("week", "wednesday", "07:30", "America/New_York")
    ]
