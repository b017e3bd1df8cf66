"""The report page when things go wrong: SMTP down, cancel, reload, no event stream.

These run against `patient_api`, whose email step keeps retrying for minutes, so
a refusing SMTP server holds a report in flight for as long as a test needs.
"""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from playwright.async_api import Page, Route, expect

from reportflow.core.config import Settings
from tests.browser.conftest import Console, screenshot_path
from tests.browser.page_actions import (
    generate_button,
    page_state,
    report_id_in_url,
    sign_in,
    wait_for_stage,
    wait_for_status,
)
from tests.conftest import MakeUser
from tests.utils.reportflow_http import last_90_days, render_held, report_id_for
from tests.utils.smtp import SmtpServer

pytestmark = pytest.mark.browser

REFUSAL = "421 4.3.2 Service not available, try again later"


async def test_smtp_down_says_so_in_words_then_recovers(
    page: Page, patient_api: str, make_user: MakeUser, smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.refuse(1000, REFUSAL, to=user.email)
    await sign_in(page, patient_api, user)

    await generate_button(page).click()

    notice = page.locator("#retry")
    await expect(notice).to_contain_text("The email server is unavailable", timeout=60_000)
    await expect(notice).to_contain_text("421")
    await expect(notice).to_contain_text(re.compile(r"Trying again in \d+ seconds?"))
    await expect(notice).to_contain_text(re.compile(r"\(attempt \d+ of 40\)"))
    # The email step has started: too late to cancel, so the page offers no cancel.
    await expect(page.get_by_role("button", name="Cancel report")).to_be_hidden()
    await expect(generate_button(page)).to_be_disabled()
    await page.screenshot(path=screenshot_path("test_smtp_down_retrying"), full_page=True)

    smtp.reset()

    await wait_for_status(page, "completed")
    await expect(notice).to_be_hidden()
    await expect(page.get_by_role("link", name="Download PDF")).to_be_visible()
    assert len(smtp.messages_to(user.email or "")) == 1


async def test_cancel_while_running_ends_cancelled_without_email(
    page: Page, patient_api: str, patient_settings: Settings, make_user: MakeUser, smtp: SmtpServer
) -> None:
    """SMTP accepts mail here: were the cancel ignored, the email would go out."""
    user = await make_user()
    with render_held(patient_settings.report_store_path, report_id_for(user.id)):
        await sign_in(page, patient_api, user)
        await generate_button(page).click()
        await wait_for_stage(page, "rendering")
        async with page.expect_response(lambda r: r.url.endswith("/cancel")) as cancelled:
            await page.get_by_role("button", name="Cancel report").click()
        assert (await cancelled.value).status == 202

    await wait_for_status(page, "cancelled")
    await expect(page.locator("#outcome")).to_contain_text("No email was sent")
    await expect(page.get_by_role("button", name="Generate again")).to_be_enabled()
    await expect(page.get_by_role("button", name="Cancel report")).to_be_hidden()
    await expect(generate_button(page)).to_be_enabled()
    assert smtp.attempts_to(user.email or "") == []


async def test_cancel_is_not_offered_once_the_email_is_being_sent(
    page: Page, patient_api: str, make_user: MakeUser, smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.stall_after_data(1, seconds=4.0, to=user.email)
    await sign_in(page, patient_api, user)
    await generate_button(page).click()

    await wait_for_stage(page, "emailing")
    await expect(page.get_by_role("button", name="Cancel report")).to_be_hidden()

    await wait_for_status(page, "completed")
    assert len(smtp.messages_to(user.email or "")) == 1


async def test_reload_mid_run_resumes_the_same_report(
    page: Page, patient_api: str, make_user: MakeUser, smtp: SmtpServer
) -> None:
    start, end = last_90_days()
    user = await make_user()
    smtp.refuse(1000, REFUSAL, to=user.email)
    await sign_in(page, patient_api, user)
    await generate_button(page).click()
    await wait_for_stage(page, "emailing")
    report_id = report_id_in_url(page)

    await page.reload()

    await wait_for_stage(page, "emailing")
    assert report_id_in_url(page) == report_id
    assert (await page_state(page))["lastStatus"]["report_id"] == report_id
    await expect(page.locator("#report-title")).to_have_text(f"Report {start} to {end}")
    await expect(generate_button(page)).to_be_disabled()
    smtp.reset()
    await wait_for_status(page, "completed")
    assert len(smtp.messages_to(user.email or "")) == 1

    # Coming back later, in a new tab that has to sign in again, finds it too.
    later = await page.context.new_page()
    try:
        await sign_in(later, patient_api, user, query=f"?report={report_id}")
        await wait_for_status(later, "completed")
        await expect(later.get_by_role("link", name="Download PDF")).to_be_visible()
    finally:
        await later.close()


async def test_blocked_event_stream_falls_back_to_growing_polls(
    page: Page, patient_api: str, make_user: MakeUser, smtp: SmtpServer, console: Console
) -> None:
    user = await make_user()
    smtp.refuse(1000, REFUSAL, to=user.email)

    async def abort(route: Route) -> None:
        await route.abort()

    await page.route(re.compile(r"/events(\?|$)"), abort)  # with or without ?run_id=
    await sign_in(page, patient_api, user)

    await generate_button(page).click()

    await page.wait_for_function("() => window.reportflow.pollDelays.length >= 3", timeout=30_000)
    state = await page_state(page)
    assert state["transport"] == "polling"
    assert state["pollDelays"][:3] == [2000, 3000, 4500]
    assert "debug: poll 2000" in console.lines
    await expect(page.locator("#connection")).to_contain_text("Live updates are unavailable")
    await expect(page.locator("#retry")).to_contain_text("The email server is unavailable")

    smtp.reset()

    await wait_for_status(page, "completed")
    delays = (await page_state(page))["pollDelays"]
    assert all(b > a for a, b in pairwise(delays)), delays
    await expect(page.locator("#connection")).to_be_hidden()
    assert len(smtp.messages_to(user.email or "")) == 1
