"""The browser on a real headless Chromium: PDF content, network isolation, crash recovery.
No mocks. The report's HTML alone is tested in test_report_html.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import unicodedata
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reportflow.core.background import heartbeating
from reportflow.core.browser import Browser, Isolation, count_pages, find_chromium
from reportflow.models import CategoryTotal, MerchantTotal, TransactionRow
from reportflow.report import format_cents, render_html
from reportflow_dev.testing import _descendants, _parents
from tests.utils.listener import Listener, hostile_strings, serve_listener
from tests.utils.reportflow_http import pdf_text
from tests.utils.reports import make_empty_report_data, make_report_data

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- helpers


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for this module's tests, like one per worker process in production."""
    instance = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


# --------------------------------------------------------------------------- PDF


async def test_pdf_contains_totals(browser: Browser) -> None:
    data = make_report_data()
    assert data.net_cents < 0  # the minus sign must survive too
    pdf = await browser.pdf(render_html(data))

    assert pdf.startswith(b"%PDF")
    assert count_pages(pdf) >= 1
    text = pdf_text(pdf)
    assert format_cents(data.net_cents, data.currency) in text
    assert str(data.transaction_count) in text
    assert "Ada Lovelace" in text
    assert "Hausverwaltung Müller GmbH" in text


async def test_pdf_of_empty_range(browser: Browser) -> None:
    data = make_empty_report_data()
    pdf = await browser.pdf(render_html(data))
    assert count_pages(pdf) == 1
    text = pdf_text(pdf)
    assert "No transactions in this period" in text
    assert format_cents(0, data.currency) in text


async def test_heartbeats_come_each_interval_and_none_at_the_start() -> None:
    """A render (or an email) shorter than the interval costs Temporal no heartbeat;
    a longer one (waiting for a render slot, a slow print) beats every interval."""
    loop = asyncio.get_running_loop()
    beats: list[float] = []
    began = loop.time()
    async with heartbeating(lambda: beats.append(loop.time() - began), interval=0.5):
        await asyncio.sleep(0.05)
    assert beats == []

    began = loop.time()
    async with heartbeating(lambda: beats.append(loop.time() - began), interval=0.05):
        async with asyncio.timeout(10):
            while len(beats) < 3:
                await asyncio.sleep(0.01)
    assert beats[0] >= 0.04  # one interval in, not at the start


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return b""


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_chromium_never_outranks_the_worker(browser: Browser) -> None:
    """Run as root, Chromium sets its browser and GPU processes to nice -8, above the
    worker, the API and Temporal on a shared host; it must not."""
    await browser.pdf(render_html(make_report_data()))  # renderers and the GPU process are up
    assert browser.process_pid is not None
    chromium = {browser.process_pid, *_descendants(browser.process_pid, _parents())}
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    niceness = {pid: _nice(pid) for pid in chromium if Path(f"/proc/{pid}").exists()}
    assert len(niceness) >= 3, niceness  # browser, GPU or utility, a renderer
    assert all(nice >= ours for nice in niceness.values()), niceness


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_chromium_yields_to_the_worker_renderers_included() -> None:
    """Every thread of every Chromium process, renderers started after the launch
    among them, runs under SCHED_BATCH and at CHROMIUM_NICE (here 10) or lower
    priority; the worker keeps its own policy and nice value."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    nicer = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")), nice=ours + 10)
    await nicer.start()
    try:
        launched = nicer.process_pid
        assert launched is not None
        await nicer.pdf(render_html(make_report_data()))
        # A page held open: its renderer (forked by a zygote) is up while we look.
        context = await (await nicer._current()).new_context(java_script_enabled=False)
        await (await context.new_page()).set_content("<p>held</p>")
        chromium = {launched, *_descendants(launched, _parents())}
        threads = {}
        for pid in chromium:
            for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    tid = int(task.name)
                    threads[tid] = (os.sched_getscheduler(tid), _nice(tid))
        renderers = [pid for pid in chromium if b"--type=renderer" in _cmdline(pid)]
        assert renderers
        await context.close()
        assert all(policy == os.SCHED_BATCH for policy, _ in threads.values()), threads
        assert all(nice >= ours + 10 for _, nice in threads.values()), threads
        assert os.getpriority(os.PRIO_PROCESS, 0) == ours
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        await nicer.close()


async def test_concurrent_pdfs_share_one_browser(browser: Browser) -> None:
    datas = [make_report_data(user_name=f"User {i}", net_cents=-i * 10_001) for i in range(4)]
    pdfs = await asyncio.gather(*(browser.pdf(render_html(d)) for d in datas))
    for data, pdf in zip(datas, pdfs, strict=True):
        text = pdf_text(pdf)
        assert data.user_name in text
        assert format_cents(data.net_cents, data.currency) in text


async def test_javascript_is_off(browser: Browser) -> None:
    html = (
        "<html><body><p id=p>static text</p>"
        "<script>document.getElementById('p').textContent = 'JS RAN';</script></body></html>"
    )
    text = pdf_text(await browser.pdf(html))
    assert "static text" in text
    assert "JS RAN" not in text


# --------------------------------------------------------------------------- security


def test_listener_counts_requests(listener: Listener) -> None:
    """The zero in the isolation tests can fail: a plain request is counted."""
    with urllib.request.urlopen(listener.url("/sanity"), timeout=5) as response:
        assert response.read().startswith(b"root:x:0:0")
    assert listener.paths == ["/sanity"]
    assert listener.hits >= 2  # one connection + one request


async def test_untrusted_text_cannot_fetch_or_read_files(
    browser: Browser, listener: Listener
) -> None:
    hostile = hostile_strings(listener)
    values = list(hostile.values())
    data = make_report_data(
        top_merchants=[MerchantTotal(v, 1000 + i, 1) for i, v in enumerate(values)],
        by_category=[CategoryTotal(v, 1000 + i, 1) for i, v in enumerate(values)],
        largest=[
            TransactionRow("2024-05-01T10:00:00", v, v, -1000 - i, "EUR")
            for i, v in enumerate(values)
        ],
    )
    pdf = await browser.pdf(render_html(data))

    # Waiting for the absence of an event: a short bounded wait is all we can do.
    await wait_until(lambda: listener.hits > 0, within=1.0)
    assert listener.hits == 0, listener.paths

    text = pdf_text(pdf)
    # NFKC: some fonts print "fi" as one ligature glyph, which extracts as "ﬁ".
    flat = unicodedata.normalize("NFKC", " ".join(text.split()))
    assert "iframe src=file:///etc/passwd" in flat
    assert "link rel=prefetch" in flat
    assert "meta http-equiv=refresh" in flat
    assert "fetch(" in flat
    assert "root:x:0:0" not in text


CSP = (
    "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
    "style-src 'unsafe-inline'\">"
)
NO_WALLS = Isolation(javascript_off=False, offline=False, abort_requests=False, dead_proxy=False)


def _markup(listener: Listener) -> str:
    """Resources the page asks for as it loads."""
    return (
        f"<link rel=stylesheet href={listener.url('/sheet.css')}>"
        f"<style>body{{background:url({listener.url('/css')})}}</style>"
        f"<img src={listener.url('/img')}><iframe src={listener.url('/frame')}></iframe>"
    )


def _script(listener: Listener) -> str:
    """A request only a running script makes (no preload scanner can see the URL)."""
    host, port = listener.url("/").split("//")[1].rstrip("/").split(":")
    return f"<script>new Image().src = 'http://' + '{host}:' + {port} + '/js';</script>"


def _alone(wall: str) -> Isolation:
    return replace(NO_WALLS, **{wall: True})


# wall -> (its browser, the attack it stops, what it stops). Only the dead proxy
# stops Chromium's speculative *connection* to a host named in the page: the
# others stop every request, but not that preconnect. Hence the layers.
WALLS: dict[str, tuple[Isolation, Any, str]] = {
    "csp": (
        NO_WALLS,
        lambda listener: f"<html><head>{CSP}{_markup(listener)}</head></html>",
        "requests",
    ),
    "javascript_off": (_alone("javascript_off"), _script, "requests"),
    "offline": (_alone("offline"), _markup, "requests"),
    "abort_requests": (_alone("abort_requests"), _markup, "requests"),
    "dead_proxy": (_alone("dead_proxy"), _markup, "connections"),
}


@pytest.mark.parametrize("wall", WALLS)
async def test_each_browser_wall_alone_stops_its_attack(wall: str) -> None:
    """Defense in depth, one wall at a time: the attack reaches a listener with no
    walls at all (so the test can fail), and not with this wall alone."""
    isolation, attack, stops = WALLS[wall]
    with serve_listener() as control, serve_listener() as target:
        async with _browser(NO_WALLS) as open_browser:
            await open_browser.pdf(attack(control).replace(CSP, ""))
            assert await wait_until(lambda: bool(control.paths)), "the attack works unwalled"
        async with _browser(isolation) as walled:
            await walled.pdf(attack(target))
        # Waiting for the absence of an event: a short bounded wait is all we can do.
        await wait_until(lambda: target.hits > 0, within=1.0)
        assert target.paths == [], "no request got through"
        if stops == "connections":
            assert target.connections == 0, "not even a connection"


@contextlib.asynccontextmanager
async def _browser(isolation: Isolation) -> AsyncIterator[Browser]:
    instance = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")), isolation=isolation)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


# --------------------------------------------------------------------------- lifecycle


def test_find_chromium() -> None:
    with pytest.raises(FileNotFoundError, match="CHROMIUM_EXECUTABLE"):
        find_chromium("/nonexistent/chromium")
    found = find_chromium(None)
    if found is not None:
        assert os.access(found, os.X_OK)
        assert find_chromium(found) == found


@pytest.mark.parametrize("wait_for_exit", [True, False], ids=["after-exit", "immediately"])
async def test_relaunches_after_chromium_is_killed(wait_for_exit: bool) -> None:
    instance = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    try:
        data = make_report_data()
        first = await instance.pdf(render_html(data))
        assert first.startswith(b"%PDF")
        pid = instance.process_pid
        assert pid is not None

        os.kill(pid, signal.SIGKILL)
        if wait_for_exit:
            assert await wait_until(lambda: not pid_alive(pid), within=10)
            assert await wait_until(lambda: not instance.is_running, within=10)

        second = await instance.pdf(render_html(data))
        assert format_cents(data.net_cents, data.currency) in pdf_text(second)
        assert instance.launches == 2
        new_pid = instance.process_pid
        assert new_pid is not None and new_pid != pid
    finally:
        await instance.close()
    assert await wait_until(lambda: instance.process_pid is None, within=10)


async def test_closed_browser_refuses_until_started_again() -> None:
    instance = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    await instance.ensure_started()
    assert instance.is_running and instance.process_pid is not None
    await instance.close()
    with pytest.raises(RuntimeError, match="closed"):
        await instance.pdf("<p>x</p>")
    await instance.start()
    try:
        assert (await instance.pdf("<p>again</p>")).startswith(b"%PDF")
    finally:
        await instance.close()
