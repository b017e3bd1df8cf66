"""The browser: one long-lived headless Chromium that prints HTML to PDF behind isolation walls.

Merchant names and categories are untrusted (DESIGN.md "Rendering and security");
the report's HTML (`reportflow.report`) holds walls 1 and 2, the browser the rest:

3. Each report gets a fresh browser context with JavaScript disabled, offline,
   and a route that aborts every request.
4. Chromium itself points at a dead proxy (127.0.0.1:9) with loopback not
   bypassed, and background networking is disabled, so nothing can be fetched.

One `Browser` (one Chromium process) lives for the whole worker process; it is
launched lazily and relaunched once if it has died. Chromium never runs at a
higher CPU priority than the process that launched it (`_forgo_priority_raise`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
import os
import shutil
import signal
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import PdfMargins, Playwright, async_playwright
from pypdf import PdfReader
from temporalio.exceptions import ApplicationError

from reportflow.core import tracing
from reportflow.core.background import heartbeating

logger = logging.getLogger(__name__)

__all__ = [
    "CHROMIUM_CANDIDATES",
    "LAUNCH_ARGS",
    "Browser",
    "Isolation",
    "count_pages",
    "find_chromium",
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


def count_pages(pdf: bytes) -> int:
    """How many pages a printed PDF has."""
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


class SandboxUnavailable(ApplicationError):
    """Production asked for Chromium's sandbox and it cannot start: no render runs
    without it unless the operator says so (CHROMIUM_NO_SANDBOX=true)."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"the Chromium sandbox cannot start ({why}); run the worker as a non-root "
            "user with user namespaces (as the image does), or set CHROMIUM_NO_SANDBOX=true "
            "to render without it",
            type="ChromiumSandboxUnavailable",
            non_retryable=True,
        )


_PR_CAPBSET_DROP = 24  # prctl(2)
_CAP_SYS_NICE = 23  # capability(7)


def _forgo_priority_raise() -> None:
    """Keep Chromium at this process's CPU priority or below.

    Chromium that may raise its priority (root, with CAP_SYS_NICE) puts its browser
    and GPU processes at nice -8: above the worker's own Python, the API and
    Temporal on a shared host. A render then holds up the workflow tasks around it
    and any status read. Dropping the capability from this process's bounding set
    keeps it from everything launched from now on (the Playwright driver, Chromium);
    this process keeps its own. Without the capability (not root, or a container's
    defaults) there is nothing to drop, and the call changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_CAPBSET_DROP, _CAP_SYS_NICE, 0, 0, 0) != 0:
            logger.debug("CAP_SYS_NICE kept in the bounding set (errno %d)", ctypes.get_errno())
    except (OSError, AttributeError):
        logger.debug("no prctl here", exc_info=True)


def deprioritize(root: int, nice: int) -> None:
    """Put process `root`, its descendants and every thread of each under SCHED_BATCH,
    at `nice` or lower priority.

    SCHED_BATCH tells the kernel these threads are CPU-bound: a waking Chromium
    thread never preempts the API, Temporal or the worker's workflow tasks, while
    they preempt it as soon as they wake. Unlike a nice value, it leaves Chromium's
    own thread priorities as they are: at nice 10 every renderer cost 35 % more CPU
    a PDF (docs/performance.md), under SCHED_BATCH at nice 0 nothing.

    On Linux a policy and a priority belong to a thread, and a fork inherits its
    caller's: the zygotes that fork each renderer are among the descendants, so
    renderers started later come out the same. A thread already at `nice` or below
    keeps its nice value.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = entry.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    pending = [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            tid = int(task.name)
            with contextlib.suppress(OSError):
                if os.sched_getscheduler(tid) == os.SCHED_OTHER:  # keeps its nice value
                    os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
                if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)


class Browser:
    """One long-lived headless Chromium for this process; one fresh context per PDF."""

    def __init__(
        self,
        executable: str | None,
        *,
        timeout_seconds: float = 60.0,
        isolation: Isolation = Isolation(),
        max_concurrent: int | None = None,
        require_sandbox: bool = False,
        no_sandbox: bool = False,
        nice: int = 0,
    ) -> None:
        self.executable = executable
        # Chromium's processes run under SCHED_BATCH at this nice value or lower
        # (CHROMIUM_NICE): on a shared host a burst of prints then waits for the API,
        # Temporal and the worker's own workflow tasks instead of holding them up.
        self.nice = nice
        # require_sandbox: a sandbox that cannot start is an error (production);
        # otherwise Chromium goes on without it and says so. no_sandbox: never try it.
        self.require_sandbox = require_sandbox
        self.no_sandbox = no_sandbox
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
        _forgo_priority_raise()
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
        pid = self.process_pid
        if pid is not None and sys.platform.startswith("linux"):
            deprioritize(pid, self.nice)
        logger.info(
            "chromium %s launched (%s, launch #%d, SCHED_BATCH at nice %d)",
            self._browser.version,
            self.executable or "playwright-managed",
            self.launches,
            self.nice,
        )

    async def _do_launch(self, playwright: Playwright) -> PlaywrightBrowser:
        first = self.sandbox is None
        if self.sandbox is None:
            if self.no_sandbox:
                self.sandbox, self.sandbox_note = False, "--no-sandbox: CHROMIUM_NO_SANDBOX=true"
            else:
                self.sandbox, self.sandbox_note = sandbox_choice()
        if self.require_sandbox and not self.sandbox:
            raise SandboxUnavailable(self.sandbox_note.removeprefix("--no-sandbox: "))
        try:
            browser = await self._launch_with(playwright, sandbox=self.sandbox)
        except PlaywrightError as err:
            if self.require_sandbox:
                raise SandboxUnavailable(_first_line(err)) from err
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
        The call is one "chromium print" span when tracing is on.
        """
        with tracing.span("chromium print") as span:
            pdf = await self._pdf(html, heartbeat)
            span.set_attribute("reportflow.pdf_bytes", len(pdf))
        return pdf

    async def _pdf(self, html: str, heartbeat: Callable[[], None] | None) -> bytes:
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
