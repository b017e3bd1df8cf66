"""The report page in headless Chromium against the real stack: the ordinary paths."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Page, expect
from temporalio.client import Client

from reportflow.core.config import Settings
from tests.browser.page_actions import (
    REPORT_TIMEOUT_MS,
    generate_button,
    page_state,
    report_id_in_url,
    sign_in,
    wait_for_status,
)
from tests.conftest import MakeUser
from tests.utils.data import sample_transactions
from tests.utils.reportflow_http import download_pdf, last_90_days, latest_run
from tests.utils.smtp import SmtpServer
from tests.utils.stack import serve_api
from tests.utils.wait import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("worker")]

PHONE = {"width": 390, "height": 844}


async def test_generate_follows_stages_to_download_and_email(
    page: Page, api_url: str, http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=21))
    await sign_in(page, api_url, user)
    await expect(page.get_by_label("From", exact=True)).to_have_value(start.isoformat())
    await expect(page.get_by_label("To", exact=True)).to_have_value(end.isoformat())

    await generate_button(page).click()

    await wait_for_status(page, "completed")
    report_id = report_id_in_url(page)
    await expect(page.locator("#report-title")).to_have_text(f"Report {start} to {end}")
    await expect(page.locator("#percent")).to_have_text("100%")
    await expect(page.locator("#emailed-to")).to_have_text(user.email or "")
    link = page.get_by_role("link", name="Download PDF")
    async with page.expect_download() as download_info:
        await link.click()
    download = await download_info.value
    assert download.suggested_filename == f"{report_id}.pdf"
    path = await download.path()
    pdf = path.read_bytes()
    assert pdf.startswith(b"%PDF")
    assert pdf == await download_pdf(http, user, report_id)
    state = await page_state(page)
    assert state["transport"] == "events" and state["pollDelays"] == []
    progress = [int(step.split(":")[2]) for step in state["seen"]]
    assert progress == sorted(progress), state["seen"]
    assert state["seen"][-1] == "completed:done:100"
    assert len(smtp.messages_to(user.email or "")) == 1
    await expect(page.locator("#recent-list li").first).to_be_visible()


async def test_quadruple_click_makes_one_report_and_one_email(
    page: Page, api_url: str, make_user: MakeUser, smtp: SmtpServer, temporal_client: Client
) -> None:
    user = await make_user()
    await sign_in(page, api_url, user)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    await generate_button(page).click(click_count=4)

    await expect(generate_button(page)).to_be_disabled()
    await wait_for_status(page, "completed")
    assert len(posts) == 1, posts
    report_id = report_id_in_url(page)
    status = await page.request.get(f"{api_url}/reports/{report_id}", headers=user.headers)
    assert await latest_run(temporal_client, report_id) == (await status.json())["run_id"]
    assert len(smtp.messages_to(user.email or "")) == 1
    await expect(generate_button(page)).to_be_enabled()


async def test_failed_report_says_why_and_offers_to_try_again(
    page: Page, api_url: str, make_user: MakeUser, temporal_client: Client
) -> None:
    user = await make_user(email=None)
    await sign_in(page, api_url, user)

    await generate_button(page).click()

    await wait_for_status(page, "failed")
    await expect(page.locator("#failure-reason")).to_contain_text("no email address")
    # The user is told a sentence meant for them; the worker's own message (which
    # names the users table) is for admins and logs.
    await expect(page.locator("#outcome")).to_contain_text("Details: your account has no email")
    await expect(page.locator("#outcome")).not_to_contain_text("users table")
    await expect(page.locator("#report-badge")).to_have_text("failed")
    await expect(page.get_by_role("button", name="Cancel report")).to_be_hidden()
    report_id = report_id_in_url(page)
    failed_run = await latest_run(temporal_client, report_id)
    follows: list[str] = []
    page.on("request", lambda r: follows.append(r.url) if "/events" in r.url else None)

    await page.get_by_role("button", name="Try again").click()

    second_run = await wait_until(
        lambda: latest_run(temporal_client, report_id),
        lambda run: run != failed_run,
        what="a second run",
    )
    await wait_for_status(page, "failed")
    await expect(page.get_by_role("button", name="Try again")).to_be_enabled()
    # The page follows the run its POST started, whichever API replica answers.
    assert follows and all(url.endswith(f"/events?run_id={second_run}") for url in follows), follows


async def test_keyboard_alone_signs_in_generates_and_reaches_the_download(
    page: Page, api_url: str, make_user: MakeUser
) -> None:
    user = await make_user()
    await page.goto(api_url)

    async def tab_to(selector: str) -> None:
        for _ in range(15):
            await page.keyboard.press("Tab")
            if await page.evaluate(f"document.activeElement.matches({selector!r})"):
                outline = await page.evaluate(
                    "getComputedStyle(document.activeElement).outlineStyle"
                )
                assert outline != "none", f"no visible focus on {selector}"
                return
        raise AssertionError(f"Tab never reached {selector}")

    await tab_to("#token")
    await page.keyboard.type(user.token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="New report")).to_be_visible()
    await tab_to("#generate-button")
    await page.keyboard.press("Enter")

    await wait_for_status(page, "completed")
    await expect(page.locator("#status-text")).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#status-text")).to_contain_text("ready")
    await expect(page.get_by_role("link", name="Download PDF")).to_be_visible()
    await tab_to("#download")


@pytest.mark.parametrize("page", [PHONE], ids=["390px"], indirect=True)
async def test_phone_viewport_fits_and_works(page: Page, api_url: str, make_user: MakeUser) -> None:
    user = await make_user()

    async def assert_fits() -> None:
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width}px wide"

    await sign_in(page, api_url, user)
    await assert_fits()
    for control in (
        page.get_by_label("From", exact=True),
        page.get_by_label("To", exact=True),
        generate_button(page),
    ):
        box = await control.bounding_box()
        assert box is not None and box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]

    await generate_button(page).click()
    await expect(page.locator("#bar")).to_be_visible()
    await assert_fits()
    await wait_for_status(page, "completed")
    link = page.get_by_role("link", name="Download PDF")
    await link.scroll_into_view_if_needed(timeout=REPORT_TIMEOUT_MS)
    box = await link.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    await assert_fits()


async def test_demo_token_is_filled_in_and_signs_in(
    page: Page, settings: Settings, make_user: MakeUser
) -> None:
    user = await make_user()
    async with serve_api(settings, demo_token=user.token) as url:
        await page.goto(url)
        await expect(page.get_by_label("Access token")).to_have_value(user.token)
        await expect(page.locator("#token-help")).to_contain_text(re.compile("demo", re.I))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="New report")).to_be_visible()
        await expect(page.get_by_text("No reports yet.")).to_be_visible()


async def test_the_kind_picker_shows_the_kinds_form_and_downloads_its_file(
    page: Page, api_url: str, http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 30, rng_seed=22))
    await sign_in(page, api_url, user)
    picker = page.get_by_label("Kind of report")
    await expect(picker).to_be_visible()
    await picker.select_option("transactions-csv")
    await expect(page.locator("#kind-help")).to_contain_text("Every transaction")
    await expect(page.get_by_label("From", exact=True)).to_be_visible()

    await generate_button(page).click()

    await wait_for_status(page, "completed")
    report_id = report_id_in_url(page)
    assert "-transactions-csv-" in report_id
    await expect(page.locator("#report-title")).to_have_text(
        f"Transactions (CSV): {start} to {end}"
    )
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await download_info.value
    assert download.suggested_filename == f"{report_id}.csv"
    rows = (await download.path()).read_text().splitlines()
    doc = (await http.get(f"/reports/{report_id}", headers=user.headers)).json()
    assert rows[0].startswith("id,posted_at,amount_cents") and doc["result"]["bytes"] > 0
