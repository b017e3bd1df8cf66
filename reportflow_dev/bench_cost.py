"""`reportflow bench` cost table: the CPU one report costs, by part, measured on a burst.

Each process's own CPU comes from /proc: the worker's Chromium (browser, zygotes,
renderers) and Playwright's node driver below the worker, the Temporal server,
the API, and the bench itself (its clients and SMTP server). The worker's own
process is split further. Its native threads (the SDK's Rust core: gRPC, polling)
are told from its Python threads by name, and the Python time is split by
py-spy, sampling the worker from outside at `SAMPLE_RATE`: each sample goes to
the innermost frame that belongs to a known part (by its module's file path),
so `json` called by the payload converter counts as payload encoding and `json`
called by an activity as the activity's; samples taken at a blocking wait are
left out (`WAITS`). The split is then scaled to the Python threads' measured
CPU, so sampling error moves time between parts but never changes the total.

py-spy runs outside the worker and reads its memory without pausing it
(`--nonblocking`). Its own CPU, taken from the same cores, is in the note line,
not in the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import linecache
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from reportflow_dev.bench_figures import COST_KEY, Figure
from reportflow_dev.bench_status import _cpu_seconds, _tree_cpu
from reportflow_dev.testing import _descendants, _parents

SAMPLE_RATE = 100  # py-spy samples a second

# How long after the burst's last SMTP 250 the worker may go on finishing its
# runs (giving slots back, completing workflows) before it counts as quiet.
SETTLE_SECONDS = 10.0
QUIET_SHARE = 0.05  # of one core, over `QUIET_WINDOW`
QUIET_WINDOW = 0.3

# Parts of the worker's Python, each with the file paths of its modules. A frame
# belongs to the first part one of whose paths it contains; frames of no part (the
# event loop, `json`, `threading`, pydantic, protobuf...) belong to their caller's.
PYTHON_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PDF post-processing", ("/pypdf/",)),
    (
        "template rendering",
        ("/jinja2/", "/markupsafe/", "/reportflow/report/html.py", "/reportflow/report/chart.py",
         "/reportflow/report/templates/"),
    ),
    (
        "SQL",
        ("/sqlalchemy/", "/aiosqlite/", "/sqlite3/", "/asyncpg/", "/greenlet/",
         "/reportflow/core/db.py", "/reportflow/report/query.py",
         "/reportflow/activities/slots.py"),
    ),
    (
        "SMTP",
        ("/aiosmtplib/", "/email/", "/reportflow/core/mailer.py",
         "/reportflow/activities/email.py"),
    ),
    (
        "payload encoding",
        ("/reportflow/core/codec.py", "/reportflow/core/clear_payloads.py", "/cryptography/",
         "/temporalio/converter", "/temporalio/contrib/pydantic"),
    ),
    (
        "SDK: workflow activations, sandbox",
        ("/temporalio/worker/_workflow", "/temporalio/worker/workflow_sandbox/",
         "/temporalio/workflow.py", "/reportflow/workflows/",
         "/reportflow/core/workflow_runner.py"),
    ),
    ("Playwright client (Python)", ("/playwright/", "/reportflow/core/browser.py")),
    ("logs and traces", ("/logging/", "/opentelemetry/", "/reportflow/core/logs.py",
                         "/reportflow/core/tracing.py")),
    ("SDK: other Python", ("/temporalio/",)),
)  # fmt: skip
OTHER_PYTHON = "other Python"

# Lines where a thread blocks in C with the GIL released: the event loop's epoll, an
# idle thread-pool worker, aiosqlite's idle connection thread, a lock. A sample whose
# innermost frame is on one was taken while that thread was woken and queued for a
# CPU, which py-spy counts as running: on a busy machine these were two thirds of
# the samples. They are left out, with samples of threads showing no Python frame.
WAITS: tuple[tuple[str, str], ...] = (
    ("/selectors.py", "self._selector.poll("),
    ("/concurrent/futures/thread.py", "work_queue.get("),
    ("/aiosqlite/core.py", "tx.get("),
    ("/threading.py", ".acquire("),
)

# The table's rows, in order, and how each is measured.
ROWS: dict[str, str] = {
    "Chromium printing": "/proc: the worker's Chromium processes",
    "Playwright driver (node)": "/proc: the driver process",
    "Playwright client (Python)": "worker Python, sampled",
    "PDF post-processing": "worker Python, sampled",
    "template rendering": "worker Python, sampled",
    "SQL": "worker Python, sampled",
    "SMTP": "worker Python, sampled",
    "payload encoding": "worker Python, sampled",
    "SDK: workflow activations, sandbox": "worker Python, sampled",
    "SDK: other Python": "worker Python, sampled",
    "SDK core (Rust threads)": "/proc: the worker's native threads",
    "logs and traces": "worker Python, sampled",
    OTHER_PYTHON: "worker Python, sampled: event loop, stdlib, reportflow's glue",
    "Temporal server": "/proc: its process",
    "API": "/proc: its process",
    "bench (clients, SMTP)": "its own process time",
}


def part_of(path: str) -> str | None:
    """The part a module file belongs to, if any."""
    for part, paths in PYTHON_PARTS:
        if any(p in path for p in paths):
            return part
    return None


def _where(frame: str) -> tuple[str, int] | None:
    """(file path, line) of one py-spy frame, `function (path:line)`; None for labels
    such as `thread (123): MainThread`."""
    if not frame.endswith(")") or " (" not in frame:
        return None
    path, colon, line = frame.rsplit(" (", 1)[1][:-1].rpartition(":")
    return (path, int(line)) if colon and line.isdigit() else None


def is_wait(path: str, line: int) -> bool:
    """Whether a source line is one of `WAITS` (read from the file itself, so it holds
    whatever the Python version numbers its lines)."""
    text = linecache.getline(path, line)
    return any(path.endswith(file) and call in text for file, call in WAITS)


def classify(stack: list[str]) -> str | None:
    """The part of one sample: its innermost frame's that belongs to one. None for a
    sample taken at a wait (`WAITS`) or with no Python frame. `stack` is py-spy's
    frames, outermost first, each `function (path:line)`."""
    frames = [where for where in map(_where, stack) if where is not None]
    if not frames or is_wait(*frames[-1]):
        return None
    for path, _ in reversed(frames):
        part = part_of(path)
        if part is not None:
            return part
    return OTHER_PYTHON


def split_samples(raw: str) -> Counter[str | None]:
    """Samples by part, from py-spy's raw (folded) output: `frame;frame;... count`;
    those taken at a wait under None."""
    parts: Counter[str | None] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            parts[classify(stack.split(";"))] += int(count)
    return parts


def sampled_threads(raw: str) -> set[int]:
    """The Python threads py-spy saw running (`--threads` puts `thread (ID): name`
    first). A thread with no Python name (`thread (ID)`) is a native one calling
    into Python now and then (the SDK's Rust core waking the event loop): it stays
    a native thread."""
    found = set()
    for line in raw.splitlines():
        if line.startswith("thread (") and "):" in line:
            tid = line[len("thread (") : line.index("):")]
            if tid.isdigit():
                found.add(int(tid))
    return found


def _own_cpu(pid: int, task: str = "") -> float:
    """utime + stime of a process (all its threads) or one of its threads: no children."""
    stat = Path(f"/proc/{pid}{task}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _comm(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return ""


def _native_threads(pid: int) -> dict[int, float]:
    """CPU of each of a Python process's threads not named as its main thread is. On
    Python < 3.14 a Python thread keeps the process's name and the SDK's Rust
    threads are named by their runtime (`tokio-rt-worker`, ...); from 3.14 on Python
    names its threads too, so those py-spy saw running Python are left out later."""
    main = _comm(Path(f"/proc/{pid}/comm"))
    threads = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            if _comm(task / "comm") not in (main, ""):
                threads[int(task.name)] = _own_cpu(pid, f"/task/{task.name}")
    return threads


@dataclass
class _Reading:
    """CPU seconds used so far, by what the table tells apart."""

    worker_own: float
    native: dict[int, float]
    driver: float
    chromium: float
    processes: dict[str, float]
    bench: float


@dataclass
class ReportCost:
    """The CPU a report costs, by part, over one burst run inside `measuring()`."""

    worker_pid: int
    processes: dict[str, int]  # table row -> PID: each process tree's CPU is a row
    workdir: Path
    began: _Reading | None = None
    ended: _Reading | None = None
    samples: Counter[str | None] = field(default_factory=Counter)  # None: at a wait
    python_threads: set[int] = field(default_factory=set)  # seen by py-spy
    unsplit: str = ""  # why the worker's Python could not be split, if it could not
    spy_cpu: float = 0.0
    seconds: float = 0.0

    def _read(self) -> _Reading:
        below = _descendants(self.worker_pid, _parents())
        # Playwright's driver names its main thread, so the process: "node-MainThread".
        drivers = {p for p in below if _comm(Path(f"/proc/{p}/comm")).startswith("node")}
        own = _own_cpu(self.worker_pid)
        driver = sum(_own_cpu(p) for p in drivers)
        return _Reading(
            worker_own=own,
            native=_native_threads(self.worker_pid),
            driver=driver,
            chromium=_tree_cpu(self.worker_pid) - own - driver,
            processes={name: _tree_cpu(pid) for name, pid in self.processes.items()},
            bench=time.process_time(),
        )

    @contextlib.asynccontextmanager
    async def measuring(self) -> AsyncIterator[None]:
        """Profile the worker while the body runs a burst, and until the worker is
        quiet after it (a run goes on past its email: slot, completion)."""
        spy = await self._start_spy()
        self.began, began = self._read(), time.perf_counter()
        try:
            yield
            await self._settle()
        finally:
            self.ended, self.seconds = self._read(), time.perf_counter() - began
            if spy is not None:
                await self._stop_spy(spy)

    async def _settle(self) -> None:
        deadline = time.perf_counter() + SETTLE_SECONDS
        last = _tree_cpu(self.worker_pid)
        while time.perf_counter() < deadline:
            await asyncio.sleep(QUIET_WINDOW)
            now = _tree_cpu(self.worker_pid)
            if now - last < QUIET_SHARE * QUIET_WINDOW:
                return
            last = now

    def _spy_path(self) -> str | None:
        beside = Path(sys.executable).with_name("py-spy")
        return str(beside) if beside.exists() else shutil.which("py-spy")

    async def _start_spy(self) -> asyncio.subprocess.Process | None:
        """py-spy attached to the worker, once it says it samples; None if it cannot."""
        spy = self._spy_path()
        if spy is None:
            self.unsplit = "py-spy not found (make setup installs it)"
            return None
        log = self.workdir / "py-spy.log"
        argv = ["record", "--pid", str(self.worker_pid), "--rate", str(SAMPLE_RATE)]
        argv += ["--format", "raw", "--nonblocking", "--full-filenames", "--threads"]
        argv += ["-o", str(self.workdir / "py-spy.raw")]
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                spy, *argv, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        deadline = time.perf_counter() + 15
        while b"Sampling process" not in log.read_bytes():
            if process.returncode is not None or time.perf_counter() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                tail = log.read_text(errors="replace").strip().splitlines()
                self.unsplit = f"py-spy could not attach: {tail[-1] if tail else 'no output'}"
                return None
            await asyncio.sleep(0.05)
        return process

    async def _stop_spy(self, process: asyncio.subprocess.Process) -> None:
        """Ctrl-C, as py-spy wants it to write its file; its samples, by part."""
        self.spy_cpu = _cpu_seconds(process.pid)
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        raw = self.workdir / "py-spy.raw"
        if raw.exists():
            text = raw.read_text(errors="replace")
            self.samples, self.python_threads = split_samples(text), sampled_threads(text)
        if not self.used_samples:
            self.unsplit = "py-spy took no samples of the worker's Python"

    @property
    def used_samples(self) -> int:
        return sum(n for part, n in self.samples.items() if part is not None)

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds each row of the table used over the burst."""
        assert self.began is not None and self.ended is not None, "measure a burst first"
        b, e = self.began, self.ended
        native = sum(
            cpu - b.native.get(tid, 0.0)
            for tid, cpu in e.native.items()
            if tid not in self.python_threads
        )
        python = max(0.0, e.worker_own - b.worker_own - native)
        rows = dict.fromkeys(ROWS, 0.0)
        rows["Chromium printing"] = e.chromium - b.chromium
        rows["Playwright driver (node)"] = e.driver - b.driver
        rows["SDK core (Rust threads)"] = native
        taken = self.used_samples
        if taken and not self.unsplit:
            for part, n in self.samples.items():
                if part is not None:
                    rows[part] += python * n / taken
        else:
            rows[OTHER_PYTHON] = python
        for name in self.processes:
            rows[name] = e.processes[name] - b.processes[name]
        rows["bench (clients, SMTP)"] = e.bench - b.bench
        return rows

    def figures(self, reports: int, burst: str) -> list[Figure]:
        """One figure per row (milliseconds per report, share of the total), then the
        total, whose baseline is the note line: `COST_KEY` figures print as a table."""
        rows = self.cpu_by_part()
        total = sum(rows.values())
        figures = [
            Figure(
                COST_KEY,
                part,
                f"{seconds / reports * 1000:.1f}",
                ROWS[part],
                seconds / total if total else None,
                "",
                None,
                {"cpu_ms_per_report": seconds / reports * 1000, "cpu_s": seconds},
            )
            for part, seconds in rows.items()
        ]
        split = (
            f"the worker's Python split by {self.used_samples} py-spy samples at "
            f"{SAMPLE_RATE}/s ({self.samples[None]} more, taken at a wait, left out)"
            if not self.unsplit
            else f"the worker's Python not split ({self.unsplit})"
        )
        note = (
            f"{burst}: {reports} reports, {self.seconds:.1f} s from the first POST until "
            f"the worker was quiet; {split}; py-spy itself used "
            f"{self.spy_cpu / reports * 1000:.1f} ms a report (not counted)"
        )
        figures.append(
            Figure(
                COST_KEY,
                "total",
                f"{total / reports * 1000:.1f}",
                note,
                1.0,
                "",
                None,
                {
                    "cpu_ms_per_report": total / reports * 1000,
                    "cpu_s": total,
                    "seconds": self.seconds,
                    "samples": float(self.used_samples),
                    "samples_at_a_wait": float(self.samples[None]),
                    "py_spy_ms_per_report": self.spy_cpu / reports * 1000,
                },
            )
        )
        return figures
