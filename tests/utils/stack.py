"""Running the real API and worker for tests: uvicorn on a free port, the worker
in this event loop or as a separate process (for SIGKILL tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from temporalio.client import Client

from reportflow.api.app import create_app
from reportflow.config import Settings
from reportflow.dev import Server
from reportflow.render import INSTANCE_SWITCH
from reportflow.worker import run_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_api(
    settings: Settings, dev_outbox: Path | None = None, demo_token: str | None = None
) -> AsyncIterator[str]:
    """The real FastAPI app behind uvicorn; yields its base URL."""
    server = Server(
        uvicorn.Config(
            create_app(settings, dev_outbox=dev_outbox, demo_token=demo_token),
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings, client: Client) -> AsyncIterator[None]:
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, client=client, ready=ready))
    async with asyncio.timeout(60):
        await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


def settings_env(settings: Settings, temporal_address: str) -> dict[str, str]:
    """The environment that makes `reportflow worker` use these settings."""
    env = dict(os.environ)
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        DATABASE_URL=settings.database_url,
        REPORT_STORE_URL=settings.report_store_url,
        SMTP_HOST=settings.smtp_host,
        SMTP_PORT=str(settings.smtp_port),
        TASK_QUEUE=settings.task_queue,
        RETRY=_json(settings, "retry"),
        TIMEOUTS=_json(settings, "timeouts"),
        WORKER_GRACE_SECONDS=str(settings.worker_grace_seconds),
        WORKER_METRICS_BIND=settings.worker_metrics_bind,
    )
    return env


def _json(settings: Settings, field: str) -> str:
    return settings.model_dump_json(include={field})[len(f'{{"{field}":') : -1]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def chromium_pids(self) -> list[int]:
        """Chromium browser processes launched by this worker (found by their marker).

        Playwright's driver spawns Chromium with `detached: true`, i.e. in a session
        and process group of its own, so they are found as descendants of the worker
        (worker -> driver -> Chromium), not by session or process group.
        """
        parents = _parents()
        found = set()
        for pid in _descendants(self.process.pid, parents):
            try:
                args = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(INSTANCE_SWITCH.encode()) for a in args) and not any(
                a.startswith(b"--type=") for a in args
            ):
                found.add(pid)
        # A child Chromium has just forked still shows the browser's command line.
        return sorted(pid for pid in found if parents.get(pid) not in found)

    def kill_all(self) -> None:
        """SIGKILL the worker and everything it started (Chromium, the Playwright driver).

        Chromium leads a process group of its own (see `chromium_pids`): it is found
        before the worker dies (it is reparented after) and its group killed too.
        """
        browsers = self.chromium_pids()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in browsers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _parents() -> dict[int, int]:
    """PID -> parent PID of every living process (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    """PIDs of every process below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@contextlib.contextmanager
def worker_process(settings: Settings, temporal_address: str, log: Path) -> Iterator[WorkerProcess]:
    """`python -m reportflow.worker` in its own session, so it can be killed whole."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reportflow.worker"],
            env=settings_env(settings, temporal_address),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log)
    try:
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill_all()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
