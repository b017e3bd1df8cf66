"""The real parts of reportflow run side by side, and the outages they must survive.

The test suite and `reportflow chaos` build their stacks from these: the API behind
uvicorn, workers in this event loop or as OS processes (`python -m reportflow.worker`,
each with its own Chromium), the Temporal dev server as a child process with its
state in a file (so it can be stopped and started again with every workflow in it),
an SMTP server that records what it accepts and can be switched off, and a TCP proxy
that can cut a database off the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from reportflow.api.app import create_app
from reportflow.core.browser import INSTANCE_SWITCH
from reportflow.core.codec import new_key_entry
from reportflow.core.config import Settings
from reportflow.core.temporal import (
    DEV_NAMESPACE,
    DEV_SQLITE_ARGS,
    FAIRNESS_DEV_ARGS,
    temporal_cli_path,
)
from reportflow.dev import Server
from reportflow.models import SEARCH_ATTRIBUTE_USER
from reportflow.worker import run_worker

log = logging.getLogger(__name__)

# What a worker logs once it has launched Chromium and polls its task queue.
WORKER_READY_LINE = "worker polling task queue"


def harness_secrets() -> dict[str, Any]:
    """A random SECRET_KEY and payload key for a private stack (tests, chaos, bench):
    set explicitly, as `reportflow api` and `reportflow worker` demand."""
    return {
        "secret_key": secrets.token_urlsafe(32),
        "payload_encryption_keys": SecretStr(new_key_entry("harness")),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- API


@contextlib.contextmanager
def _temporal_address(address: str | None) -> Iterator[None]:
    """TEMPORAL_ADDRESS set to `address` for a while (the API reads it as it starts)."""
    if address is None:
        yield
        return
    saved = os.environ.get("TEMPORAL_ADDRESS")
    os.environ["TEMPORAL_ADDRESS"] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TEMPORAL_ADDRESS", None)
        else:
            os.environ["TEMPORAL_ADDRESS"] = saved


@contextlib.asynccontextmanager
async def serve_api(
    settings: Settings,
    dev_outbox: Path | None = None,
    demo_token: str | None = None,
    *,
    temporal_address: str | None = None,
    app: FastAPI | None = None,
) -> AsyncIterator[str]:
    """The real FastAPI app behind uvicorn on a free port; yields its base URL.

    The app connects its Temporal client while it starts, from TEMPORAL_ADDRESS;
    `temporal_address` sets that for the start only, so the process keeps its own.
    Pass `app` to reach its state (its Temporal client, its watchers) from outside.
    """
    server = Server(
        uvicorn.Config(
            app or create_app(settings, dev_outbox=dev_outbox, demo_token=demo_token),
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="on",
        )
    )
    with _temporal_address(temporal_address):
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
async def api_process(
    settings: Settings,
    temporal_address: str,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[str]:
    """`reportflow api` as an OS process (for what is per process, like OpenTelemetry's
    tracer provider); yields its base URL once /healthz answers, stops it at the end."""
    api = ApiProcess.start(settings, temporal_address, log, extra_env=extra_env)
    try:
        await api.wait_ready()
        yield api.url
    finally:
        await asyncio.to_thread(api.stop)


# --------------------------------------------------------------------------- workers


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
        ENVIRONMENT=settings.environment,
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        REPORT_STORE_URL=settings.report_store_url,
        SMTP_HOST=settings.smtp_host,
        SMTP_PORT=str(settings.smtp_port),
        SMTP_TIMEOUT_SECONDS=str(settings.smtp_timeout_seconds),
        TASK_QUEUE=settings.task_queue,
        RETRY=_json(settings, "retry"),
        TIMEOUTS=_json(settings, "timeouts"),
        WORKER_GRACE_SECONDS=str(settings.worker_grace_seconds),
        WORKER_METRICS_BIND=settings.worker_metrics_bind,
        WORKER_MAX_CONCURRENT_ACTIVITIES=str(settings.worker_max_concurrent_activities),
        RATE_LIMIT_PER_MINUTE=str(settings.rate_limit_per_minute),
        PAYLOAD_ENCRYPTION_KEYS=settings.payload_encryption_keys.get_secret_value(),
        EMAIL_RATE_PER_SECOND=str(settings.email_rate_per_second),
        MAX_RUNNING_REPORTS_PER_USER=str(settings.max_running_reports_per_user),
        WEBHOOK_ALLOWED_HOSTS=settings.webhook_allowed_hosts,
    )
    if settings.worker_versioning is not None:
        env["WORKER_VERSIONING"] = str(settings.worker_versioning).lower()
    env["WORKER_DEPLOYMENT_NAME"] = settings.worker_deployment_name
    if settings.worker_build_id:
        env["WORKER_BUILD_ID"] = settings.worker_build_id
    if settings.chromium_executable:
        env["CHROMIUM_EXECUTABLE"] = settings.chromium_executable
    return env


def _spawn(
    argv: list[str],
    settings: Settings,
    temporal_address: str,
    log: Path,
    extra_env: Mapping[str, str] | None,
    cwd: Path | None,
) -> subprocess.Popen[bytes]:
    """`python <argv>` with these settings, output to `log`, in a session of its own
    (so it can be killed whole)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *argv],
            env={**settings_env(settings, temporal_address), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def _json(settings: Settings, field: str) -> str:
    return settings.model_dump_json(include={field})[len(f'{{"{field}":') : -1]


@dataclass
class WorkerProcess:
    """`python -m reportflow.worker` in a session of its own, so it can be killed whole."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls,
        settings: Settings,
        temporal_address: str,
        log: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> WorkerProcess:
        """`cwd`: the process's working directory (its own var/, as on a host of its own)."""
        argv = ["-m", "reportflow.worker"]
        return cls(_spawn(argv, settings, temporal_address, log, extra_env, cwd), log)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    async def wait_ready(self, within: float = 90.0, line: str = WORKER_READY_LINE) -> None:
        """Until the worker polls its task queue (it launches Chromium before that), or
        its log has another process's `line` (the bench's plain loop is one)."""
        async with asyncio.timeout(within):
            while line not in self.log_text():
                if not self.alive:
                    raise RuntimeError(
                        f"process {self.pid} exited with {self.process.returncode} before "
                        f"it was ready; its log {self.log} ends with:\n{self.log_tail()}"
                    )
                await asyncio.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

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

    def pause(self) -> None:
        """SIGSTOP the worker's process group (the worker and its Playwright driver;
        Chromium has a group of its own and keeps running)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)

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

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the worker drains), then SIGKILL whatever is left (blocking)."""
        if self.alive:
            self.resume()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class ApiProcess:
    """`reportflow api` as an OS process (a replica of its own), on a free port."""

    process: subprocess.Popen[bytes]
    log: Path
    url: str

    @classmethod
    def start(
        cls,
        settings: Settings,
        temporal_address: str,
        log: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ApiProcess:
        port = free_port()
        argv = ["-m", "reportflow.cli", "api", "--port", str(port)]
        process = _spawn(argv, settings, temporal_address, log, extra_env, cwd)
        return cls(process, log, f"http://127.0.0.1:{port}")

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until GET /healthz answers 200."""
        async with asyncio.timeout(within), httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.process.poll() is not None:
                    tail = self.log.read_text(errors="replace").splitlines()[-20:]
                    raise RuntimeError(
                        f"API on {self.url} exited with {self.process.returncode}; "
                        f"its log {self.log} ends with:\n" + "\n".join(tail)
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn finishes its requests), then SIGKILL (blocking)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
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


def is_chromium(pid: int) -> bool:
    """Whether `pid` is (still) one of our Chromium processes, not a reused PID."""
    try:
        args = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.startswith(INSTANCE_SWITCH.encode()) for a in args)


def kill_chromiums(pids: Iterable[int]) -> None:
    """Kill Chromiums a test or scenario froze (a stopped one never exits), with
    their process groups; PIDs no longer ours (reused since) are left alone."""
    for pid in pids:
        if is_chromium(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def worker_process(
    settings: Settings,
    temporal_address: str,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[WorkerProcess]:
    """A worker process for the block; stopped (drained, else killed) at its end."""
    worker = WorkerProcess.start(settings, temporal_address, log, extra_env=extra_env)
    try:
        yield worker
    finally:
        worker.stop()


# --------------------------------------------------------------------------- Temporal


class TemporalDevServer:
    """`temporal server start-dev` (from the lock file) as a child process.

    Its state lives in `db_file`, and it keeps its port across restarts, so
    `stop()` then `start()` is a server outage that workflows live through, with
    clients and workers reconnecting to the same address.
    """

    def __init__(
        self,
        db_file: Path,
        log: Path,
        port: int | None = None,
        metrics_port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.db_file = db_file
        self.log = log
        self.port = port or free_port()
        # The server's own Prometheus metrics (its `action` counter, ...), when set.
        self.metrics_port = metrics_port
        self.process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, within: float = 60.0) -> None:
        """Start the server and wait until it serves, with the search attribute registered."""
        if self.running:
            return
        with self.log.open("ab") as out:
            process = self.process = await asyncio.create_subprocess_exec(
                temporal_cli_path(),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db-filename",
                str(self.db_file),
                "--headless",
                "--log-level",
                "warn",
                "--search-attribute",
                f"{SEARCH_ATTRIBUTE_USER}=Keyword",
                *(["--metrics-port", str(self.metrics_port)] if self.metrics_port else []),
                # As `reportflow dev`: chaos and bench see fairness on, the file in WAL mode.
                *FAIRNESS_DEV_ARGS,
                *DEV_SQLITE_ARGS,
                *self.extra_args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        async with asyncio.timeout(within):
            while not await self._serving():
                if process.returncode is not None:
                    tail = self.log.read_text(errors="replace").splitlines()[-20:]
                    raise RuntimeError(
                        f"the Temporal dev server exited with {process.returncode}; "
                        f"{self.log} ends with:\n" + "\n".join(tail)
                    )
                await asyncio.sleep(0.2)

    async def _serving(self) -> bool:
        try:
            client = await Client.connect(self.address, namespace=DEV_NAMESPACE)
            attributes = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=DEV_NAMESPACE)
            )
        except Exception:
            return False
        return SEARCH_ATTRIBUTE_USER in attributes.custom_attributes

    async def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a clean stop: the state stays in the file), SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            log.warning("the Temporal dev server did not stop in %ss; killing it", grace)
            process.kill()
            await process.wait()


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Delivery:
    """One message the SMTP server accepted."""

    rcpt_tos: list[str]
    message_id: str
    at: float  # time.time()


@dataclass
class _Recorder:
    deliveries: list[Delivery] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        headers = BytesParser(policy=default_policy).parsebytes(
            envelope.original_content or b"", headersonly=True
        )
        self.deliveries.append(
            Delivery(list(envelope.rcpt_tos), str(headers["Message-ID"] or ""), time.time())
        )
        return "250 OK"


class RecordingSmtpServer:
    """A real SMTP server (aiosmtpd) that records every message it accepts.

    `stop()` closes its port: clients get "connection refused", the strongest form
    of a mail relay being down. `start()` opens the same port again; what was
    recorded before is kept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._recorder = _Recorder()
        self._controller: Controller | None = None

    @property
    def deliveries(self) -> list[Delivery]:
        return list(self._recorder.deliveries)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def to(self, address: str) -> list[Delivery]:
        return [d for d in self._recorder.deliveries if address in d.rcpt_tos]

    async def start(self) -> None:
        if self._controller is None:
            controller = Controller(self._recorder, hostname=self.host, port=self.port)
            # Starting waits for the server's thread to answer: keep it off this loop.
            await asyncio.to_thread(controller.start)
            self._controller = controller

    async def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)


# --------------------------------------------------------------------------- network


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `stop()` is a network outage.

    Stopping refuses new connections and cuts every open one, as a database host
    that drops off the network does; `start()` serves the same port again.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            for each in (writer, up_writer):
                each.transport.abort()
                self._writers.discard(each)
            self._pipes.difference_update(pipes)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
