"""Report rendering: ReportData -> HTML (Jinja2, autoescaped) -> PDF (headless Chromium).

Security model (see DESIGN.md "Rendering and security"): merchant names and
categories are untrusted. Walls, outermost first:

1. Jinja2 autoescaping (`autoescape=True`, never `|safe` on data), so no data
   can become markup at all.
2. A strict Content-Security-Policy meta tag as the first element of <head>.
3. Each report gets a fresh browser context with JavaScript disabled, offline,
   and a route that aborts every request.
4. Chromium itself points at a dead proxy (127.0.0.1:9) with loopback not
   bypassed, and background networking is disabled, so nothing can be fetched.

One `Browser` (one Chromium process) lives for the whole worker process; it is
launched lazily and relaunched once if it has died.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import PdfMargins, Playwright, async_playwright
from pypdf import PdfReader

from reportflow.background import heartbeating
from reportflow.models import ReportData

logger = logging.getLogger(__name__)

__all__ = [
    "CHROMIUM_CANDIDATES",
    "LAUNCH_ARGS",
    "Browser",
    "Isolation",
    "count_pages",
    "find_chromium",
    "format_cents",
    "render_html",
]

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")

# No --no-sandbox here: Browser decides (see `sandbox_choice`).
LAUNCH_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# A dead proxy with loopback NOT bypassed: no request can leave the browser.
DEAD_PROXY_ARGS = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


@dataclass(frozen=True)
class Isolation:
    """The browser's walls (3 and 4 above), all on outside the tests, which take
    them one at a time to show that each one alone stops its own attack."""

    javascript_off: bool = True
    offline: bool = True
    abort_requests: bool = True
    dead_proxy: bool = True


# The switch that marks our Chromium processes, so the browser process can be found in /proc.
INSTANCE_SWITCH = "--reportflow-instance"


# How long closing a context or the browser may take before Chromium is given up on.
CLOSE_TIMEOUT_SECONDS = 5.0

PDF_MARGIN = PdfMargins(top="14mm", bottom="16mm", left="12mm", right="12mm")

# Chromium draws these itself (no JavaScript involved); fixed markup, no data in it.
PDF_HEADER = "<span></span>"
PDF_FOOTER = (
    '<div style="width:100%;font-size:8px;color:#6b7280;padding:0 12mm;'
    'font-family:Helvetica,Arial,sans-serif;display:flex;justify-content:space-between;">'
    "<span>reportflow</span>"
    '<span>Page <span class="pageNumber"></span> of <span class="totalPages"></span></span>'
    "</div>"
)


# --------------------------------------------------------------------------- HTML


def format_cents(cents: int, currency: str) -> str:
    """Integer cents as text: ``format_cents(-123456, "EUR") == "-1,234.56 EUR"``.

    ASCII hyphen-minus for negatives and a plain space before the code, so the
    string survives PDF text extraction unchanged.
    """
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(int(cents)), 100)
    return f"{sign}{units:,}.{rest:02d} {currency}"


def _whole_units(cents: int) -> str:
    """Axis labels: whole currency units with thousands separators."""
    return f"{int(cents) // 100:,}"


def _short_datetime(value: str) -> str:
    """``2024-05-01T12:34:56`` -> ``2024-05-01 12:34``; a plain date stays a date."""
    text = str(value).replace("T", " ")
    if len(text) > 16 and text[10] == " ":
        return text[:16]
    return text


@dataclass(frozen=True)
class _WeekBar:
    label: str
    x: float
    in_y: float
    in_h: float
    out_y: float
    out_h: float
    in_cents: int
    out_cents: int


@dataclass(frozen=True)
class _CategoryBar:
    category: str
    width: float
    spent_cents: int
    count: int
    share: float


# Geometry of the weekly chart (SVG user units).
_WEEK_W = 520.0
_WEEK_H = 160.0
_WEEK_TOP = 10.0
_WEEK_LEFT = 64.0
_WEEK_BOTTOM = 26.0
_CAT_BAR_MAX = 100.0  # category bars are percentages of the widest


def _nice_ceiling(value: int) -> int:
    """A round axis maximum >= value (1, 2, 2.5, 5 times a power of ten), never zero."""
    if value <= 0:
        return 100
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * magnitude)
        if candidate >= value:
            return candidate
    return 10 * magnitude  # pragma: no cover - loop always returns


def _week_chart(data: ReportData) -> dict[str, Any]:
    weeks = data.by_week
    peak = max([abs(w.in_cents) for w in weeks] + [abs(w.out_cents) for w in weeks] + [0])
    axis_max = _nice_ceiling(peak)
    plot_h = _WEEK_H - _WEEK_TOP - _WEEK_BOTTOM
    plot_w = _WEEK_W - _WEEK_LEFT - 8.0
    slot = plot_w / max(len(weeks), 1)
    bar_w = max(min(slot * 0.34, 22.0), 2.0)
    bars: list[_WeekBar] = []
    base = _WEEK_TOP + plot_h
    for i, week in enumerate(weeks):
        in_h = plot_h * abs(week.in_cents) / axis_max
        out_h = plot_h * abs(week.out_cents) / axis_max
        center = _WEEK_LEFT + slot * (i + 0.5)
        bars.append(
            _WeekBar(
                label=week.week_start[5:10] if len(week.week_start) >= 10 else week.week_start,
                x=round(center - bar_w - 1.0, 2),
                in_y=round(base - in_h, 2),
                in_h=round(in_h, 2),
                out_y=round(base - out_h, 2),
                out_h=round(out_h, 2),
                in_cents=week.in_cents,
                out_cents=week.out_cents,
            )
        )
    gridlines = [
        {"y": round(base - plot_h * k / 4, 2), "cents": axis_max * k // 4} for k in range(5)
    ]
    # Show at most ~14 x labels so they never collide.
    label_every = max(1, -(-len(weeks) // 14))
    return {
        "width": _WEEK_W,
        "height": _WEEK_H,
        "left": _WEEK_LEFT,
        "right": _WEEK_W - 8.0,
        "base": base,
        "bar_w": round(bar_w, 2),
        "slot": slot,
        "bars": bars,
        "gridlines": gridlines,
        "label_every": label_every,
    }


def _category_chart(data: ReportData) -> list[_CategoryBar]:
    rows = sorted(data.by_category, key=lambda c: abs(c.spent_cents), reverse=True)
    peak = max([abs(c.spent_cents) for c in rows] + [0])
    total = sum(abs(c.spent_cents) for c in rows)
    return [
        _CategoryBar(
            category=c.category,
            width=round(_CAT_BAR_MAX * abs(c.spent_cents) / peak, 2) if peak else 0.0,
            spent_cents=c.spent_cents,
            count=c.count,
            share=round(100.0 * abs(c.spent_cents) / total, 1) if total else 0.0,
        )
        for c in rows
    ]


def _build_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reportflow", "templates"),
        autoescape=True,  # explicit: .j2 is not in select_autoescape's defaults
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_cents
    env.filters["short_dt"] = _short_datetime
    env.filters["whole"] = _whole_units
    return env


_ENV = _build_environment()
_TEMPLATE = "report.html.j2"


def render_html(data: ReportData) -> str:
    """The self-contained report page (inline CSS and SVG, no external resources)."""
    template = _ENV.get_template(_TEMPLATE)
    return template.render(
        data=data,
        week_chart=_week_chart(data),
        categories=_category_chart(data),
        empty=data.transaction_count == 0,
    )


# --------------------------------------------------------------------------- PDF


def count_pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def find_chromium(explicit: str | None) -> str | None:
    """The Chromium to launch.

    `explicit` (the CHROMIUM_EXECUTABLE setting) wins and must exist; else the
    first of chromium / chromium-browser / google-chrome on PATH; else None,
    meaning Playwright's own managed browser.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        found = shutil.which(explicit)
        if found:
            return found
        raise FileNotFoundError(
            f"CHROMIUM_EXECUTABLE={explicit!r}: no such executable file. "
            "Point it at a Chromium binary or unset it to auto-detect."
        )
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _first_line(exc: BaseException) -> str:
    """Playwright appends the browser's whole stderr log to its messages: keep the gist."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_browser_gone(exc: BaseException) -> bool:
    message = str(exc).lower()
    return any(
        marker in message
        for marker in (
            "target page, context or browser has been closed",
            "browser has been closed",
            "target closed",
            "browser closed",
            "connection closed",
            "has been disconnected",
        )
    )


def sandbox_choice() -> tuple[bool, str]:
    """Chromium's own sandbox where the runtime allows it: not as root, where
    Chromium refuses to start with it (a non-root user with user namespaces, as in
    the container image, keeps it)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return False, "--no-sandbox: running as root (run the worker as a non-root user)"
    return True, "sandbox on"


class Browser:
    """One long-lived headless Chromium for this process; one fresh context per PDF."""

    def __init__(
        self,
        executable: str | None,
        *,
        timeout_seconds: float = 60.0,
        isolation: Isolation = Isolation(),
        max_concurrent: int | None = None,
    ) -> None:
        self.executable = executable
        self.timeout_seconds = timeout_seconds
        self.isolation = isolation
        # More PDFs at once than cores only adds context switches and memory:
        # Chromium's printing is CPU-bound.
        self._slots = asyncio.Semaphore(max_concurrent or os.cpu_count() or 1)
        self.instance_id = uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self._closed = False
        self._playwright: Playwright | None = None
        self._browser: PlaywrightBrowser | None = None
        self.launches = 0
        self.sandbox: bool | None = None  # decided at the first launch
        self.sandbox_note = ""

    # -- lifecycle ---------------------------------------------------------

    @property
    def marker(self) -> str:
        """The harmless switch on our Chromium's command line: finds it in /proc."""
        return f"{INSTANCE_SWITCH}={self.instance_id}"

    @property
    def process_pid(self) -> int | None:
        """PID of the Chromium browser process (not its helpers), or None if not running."""
        marker = self.marker
        proc = Path("/proc")
        if not proc.is_dir():
            return None
        found: list[int] = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [a.decode("utf-8", "replace") for a in argv if a]
            if marker in args and not any(a.startswith("--type=") for a in args):
                found.append(int(entry.name))
        return min(found) if found else None

    @property
    def is_running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    async def start(self) -> None:
        """Launch Chromium now (idempotent; also reopens a closed Browser)."""
        async with self._lock:
            self._closed = False
            if not self.is_running:
                await self._launch_locked()

    async def ensure_started(self) -> None:
        await self.start()

    async def close(self) -> None:
        """Close Chromium and the Playwright driver; later `pdf` calls fail until `start`."""
        async with self._lock:
            self._closed = True
            browser, self._browser = self._browser, None
            playwright, self._playwright = self._playwright, None
            if browser is not None:
                try:
                    # A Chromium that does not answer (hung, or stopped) holds
                    # `browser.close()` for ~30 s, past the worker's drain grace.
                    async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                        await browser.close()
                except TimeoutError:
                    logger.warning(
                        "chromium did not close in %ss; killing it", CLOSE_TIMEOUT_SECONDS
                    )
                    self._kill()
                except Exception:
                    logger.debug("closing chromium failed", exc_info=True)
            if playwright is not None:
                with contextlib.suppress(Exception):
                    await playwright.stop()

    def _kill(self) -> None:
        """SIGKILL our Chromium (found by its marker switch); it works on a stopped one too."""
        pid = self.process_pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def _launch_locked(self) -> None:
        old, self._browser = self._browser, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        try:
            self._browser = await self._do_launch(self._playwright)
        except PlaywrightError:
            # The Playwright driver itself may be gone: start a fresh one and try once more.
            logger.warning(
                "chromium launch failed; restarting the playwright driver", exc_info=True
            )
            with contextlib.suppress(Exception):
                await self._playwright.stop()
            self._playwright = await async_playwright().start()
            self._browser = await self._do_launch(self._playwright)
        self.launches += 1
        logger.info(
            "chromium %s launched (%s, launch #%d)",
            self._browser.version,
            self.executable or "playwright-managed",
            self.launches,
        )

    async def _do_launch(self, playwright: Playwright) -> PlaywrightBrowser:
        first = self.sandbox is None
        if self.sandbox is None:
            self.sandbox, self.sandbox_note = sandbox_choice()
        try:
            browser = await self._launch_with(playwright, sandbox=self.sandbox)
        except PlaywrightError as err:
            if not (first and self.sandbox):
                raise
            # No user namespaces (or a seccomp profile that forbids them): say so, go on.
            self.sandbox = False
            self.sandbox_note = f"--no-sandbox: the sandbox could not start ({_first_line(err)})"
            browser = await self._launch_with(playwright, sandbox=False)
        if first:  # once per process, at start
            log = logger.info if self.sandbox else logger.warning
            log("chromium sandbox: %s", self.sandbox_note)
        return browser

    async def _launch_with(self, playwright: Playwright, *, sandbox: bool) -> PlaywrightBrowser:
        # Playwright adds --no-sandbox unless chromium_sandbox is set.
        return await playwright.chromium.launch(
            executable_path=self.executable,
            headless=True,
            args=[
                *LAUNCH_ARGS,
                *(DEAD_PROXY_ARGS if self.isolation.dead_proxy else []),
                self.marker,
            ],
            timeout=self.timeout_seconds * 1000,
            chromium_sandbox=sandbox,
        )

    async def _current(self) -> PlaywrightBrowser:
        """The running browser, launching (or relaunching a dead one) if needed."""
        browser = self._browser
        if browser is not None and browser.is_connected():
            return browser
        async with self._lock:
            if self._closed:
                raise RuntimeError("Browser is closed")
            if self._browser is None or not self._browser.is_connected():
                if self._browser is not None:
                    logger.warning("chromium is not connected; relaunching")
                await self._launch_locked()
            assert self._browser is not None
            return self._browser

    async def _relaunch_if_same(self, failed: PlaywrightBrowser) -> None:
        """Relaunch after `failed` died, unless a concurrent render already did."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("Browser is closed")
            if self._browser is failed or self._browser is None:
                logger.warning("chromium died during a render; relaunching")
                await self._launch_locked()

    # -- rendering ---------------------------------------------------------

    async def pdf(self, html: str, *, heartbeat: Callable[[], None] | None = None) -> bytes:
        """Print `html` to an A4 PDF. Retries once on a fresh browser if Chromium died.

        `heartbeat` is called every few seconds for the whole call, relaunch included.
        """
        async with heartbeating(heartbeat), self._slots:
            browser = await self._current()
            try:
                return await self._render(browser, html)
            except PlaywrightError as exc:
                if browser.is_connected() and not _is_browser_gone(exc):
                    raise
                logger.warning("render failed because chromium is gone: %s", _first_line(exc))
            await self._relaunch_if_same(browser)
            return await self._render(await self._current(), html)

    async def _render(self, browser: PlaywrightBrowser, html: str) -> bytes:
        async with asyncio.timeout(self.timeout_seconds):
            walls = self.isolation
            context = await browser.new_context(
                java_script_enabled=not walls.javascript_off,
                offline=walls.offline,
                accept_downloads=False,
                service_workers="block",
                bypass_csp=False,
            )
            try:
                if walls.abort_requests:
                    await context.route("**/*", lambda route: route.abort())
                page = await context.new_page()
                page.set_default_timeout(self.timeout_seconds * 1000)
                # set_content works with JavaScript disabled (checked by the tests).
                await page.set_content(html, wait_until="load")
                return await page.pdf(
                    format="A4",
                    print_background=True,
                    margin=PDF_MARGIN,
                    display_header_footer=True,
                    header_template=PDF_HEADER,
                    footer_template=PDF_FOOTER,
                )
            finally:
                # Bounded: a hung Chromium never answers, and would hold the render
                # (and the worker's shutdown) forever.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                        await context.close()
