"""Chromium keeps its sandbox where the runtime allows it; --no-sandbox only as root
or when the sandbox cannot start, said once at start."""

from __future__ import annotations

import logging
import os

import pytest

from reportflow.core import browser as browser_module
from reportflow.core.browser import Browser, count_pages, find_chromium
from reportflow.report import render_html
from tests.utils.reports import make_report_data


def test_sandbox_choice_follows_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert browser_module.sandbox_choice() == (
        False,
        "--no-sandbox: running as root (run the worker as a non-root user)",
    )
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert browser_module.sandbox_choice() == (True, "sandbox on")


async def test_sandbox_is_tried_and_left_only_when_it_cannot_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Ask for the sandbox whoever we are: as root (CI) Chromium refuses it and the
    # worker goes on without; as a user with user namespaces it keeps it.
    monkeypatch.setattr(browser_module, "sandbox_choice", lambda: (True, "sandbox on"))
    browser = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    caplog.set_level(logging.INFO, logger="reportflow.core.browser")
    try:
        await browser.start()
        assert count_pages(await browser.pdf(render_html(make_report_data()))) >= 1
        await browser.close()
        await browser.start()  # a relaunch decides nothing again and says nothing again
        assert count_pages(await browser.pdf(render_html(make_report_data()))) >= 1
    finally:
        await browser.close()

    said = [r.getMessage() for r in caplog.records if "chromium sandbox" in r.getMessage()]
    assert len(said) == 1, said
    if os.geteuid() == 0:
        assert browser.sandbox is False
        assert said[0].startswith("chromium sandbox: --no-sandbox: the sandbox could not start")
    else:
        assert said == [f"chromium sandbox: {browser.sandbox_note}"]
