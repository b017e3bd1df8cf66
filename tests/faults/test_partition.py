"""A worker host cut off from one of its servers for 30 s, with reports in flight.

A partition is not a refused connection: the bytes stop, nothing says so, and each
client waits for its own timeouts. The one worker process of these tests reaches
the Temporal frontend, the SMTP server and PostgreSQL each through a
`HoldingProxy` (tests/utils/tcp_proxy.py); the API (in this process) reaches
Temporal and PostgreSQL directly, as an API host on the healthy side would.

For each server in turn: start a burst of reports, hold that server's traffic for
30 s once the first report has completed (the others are then in every stage),
poll the API all the while (never a 5xx), release, and the same worker, alone,
finishes every report with exactly one email each (one Message-ID each), then
serves a report started afterwards.

Two more tests hold a server at the worst moment, right as the SMTP server accepts
a message: the database (the worker cannot record the 250) and SMTP itself (the
worker never sees the 250). One shows the worker's engine gives up on a
connection into the partition after its connect timeout, and three check the
proxy itself (no PostgreSQL needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope
from sqlalchemy import make_url, text
from temporalio.testing import WorkflowEnvironment

from reportflow.core.config import Settings
from reportflow.core.db import POSTGRES_CONNECT_TIMEOUT_SECONDS, create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule, Timeouts
from reportflow_dev.testing import WorkerProcess, serve_api
from tests.conftest import User, make_settings
from tests.faults.test_worker_crash import WORKER_START_TIMEOUT
from tests.utils.data import create_user, sample_transactions
from tests.utils.postgres import scratch_database
from tests.utils.reportflow_http import FINAL, last_90_days, wait_status
from tests.utils.smtp import RecordingHandler, SmtpServer
from tests.utils.stack import free_port
from tests.utils.tcp_proxy import HoldingProxy
from tests.utils.wait import wait_for, wait_until

pytestmark = pytest.mark.faults
log = logging.getLogger(__name__)

HOLD_SECONDS = 30.0
REPORTS = 5
REPORT_TIMEOUT = 150.0
# Production's shape, shortened: an attempt that meets the partition waits for its
# own timeout, and the retries (1, 2, 4, then 5 s apart) outlast a 30 s outage
# even when attempts fail fast (as production's 2 s to 120 s over 6 attempts do).
PARTITION_BACKOFF = Backoff(
    initial_seconds=1.0, coefficient=2.0, maximum_seconds=5.0, maximum_attempts=12
)
PARTITION_TIMEOUTS = Timeouts(query=10, render=30, render_heartbeat=10, email=15)


# --------------------------------------------------------------------------- the stack


class HookedHandler(RecordingHandler):
    """Records like the suite's SMTP server, and can run a hook as it accepts a
    message, before its 250 goes out (in the server's own thread and loop)."""

    on_accept: Callable[[], Awaitable[None]] | None = None

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        hook, self.on_accept = self.on_accept, None
        if hook is not None and reply.startswith("250"):
            await hook()
        return reply


class HookedSmtp(SmtpServer):
    handler: HookedHandler

    def __init__(self) -> None:
        super().__init__("127.0.0.1", free_port())
        self.handler = HookedHandler()
        self.controller.handler = self.handler


@dataclass
class CutOff:
    """One worker host whose every server connection goes through a proxy."""

    settings: Settings
    http: httpx.AsyncClient
    worker: WorkerProcess
    smtp: HookedSmtp
    proxies: dict[str, HoldingProxy]
    loop: asyncio.AbstractEventLoop
    tmp: Path
    users: list[User] = field(default_factory=list)

    async def new_users(self, count: int) -> list[User]:
        engine = create_engine(self.settings.database_url)
        start, _ = last_90_days()
        try:
            made = []
            for n in range(count):
                txns = sample_transactions(start, 90, len(self.users) + n)
                user_id = await create_user(engine, transactions=txns)
                token = await create_token(engine, user_id=user_id)
                made.append(User(user_id, f"{user_id}@example.com", token))
        finally:
            await engine.dispose()
        self.users.extend(made)
        return made

    async def start_reports(self, users: list[User]) -> list[str]:
        created = await asyncio.gather(
            *(self.http.post("/reports", headers=u.headers) for u in users)
        )
        assert [r.status_code for r in created] == [202] * len(users), [r.text for r in created]
        return [r.json()["report_id"] for r in created]

    async def wait_final(self, users: list[User], ids: list[str]) -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                wait_status(self.http, u, i, FINAL, timeout=REPORT_TIMEOUT)
                for u, i in zip(users, ids, strict=True)
            )
        )

    def hold_from_smtp_thread(self, name: str) -> Callable[[], Awaitable[None]]:
        """A hook for the SMTP server's thread: hold `name`'s proxy (in the test's
        loop) and return only once it holds, so the 250 goes out after."""

        async def hold() -> None:
            async def in_loop() -> None:
                self.proxies[name].hold()

            done = asyncio.run_coroutine_threadsafe(in_loop(), self.loop)
            await asyncio.wrap_future(done)

        return hold


def _through(proxy: HoldingProxy, database_url: str) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def _postgres() -> None:
    """Skip before Temporal starts: without PostgreSQL there is nothing to hold."""
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip(
            "the partition tests hold a worker's PostgreSQL connections (SQLite has "
            "none to hold): set TEST_DATABASE_URL"
        )


@pytest.fixture(scope="module")
async def cut_off(
    _postgres: None, tmp_path_factory: pytest.TempPathFactory, temporal_env: WorkflowEnvironment
) -> AsyncIterator[CutOff]:
    tmp = tmp_path_factory.mktemp("partition")
    temporal_host, temporal_port = temporal_env.client.service_client.config.target_host.rsplit(
        ":", 1
    )
    smtp = HookedSmtp()
    smtp.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(smtp.stop)
        database = await stack.enter_async_context(scratch_database("rf_partition"))
        engine = create_engine(database)
        await create_schema(engine)
        await engine.dispose()
        db_url = make_url(database)
        proxies = {
            "temporal": HoldingProxy(temporal_host, int(temporal_port)),
            "smtp": HoldingProxy("127.0.0.1", smtp.port),
            "database": HoldingProxy(db_url.host or "127.0.0.1", db_url.port or 5432),
        }
        for proxy in proxies.values():
            await stack.enter_async_context(proxy)
        retry = RetrySchedule(query=PARTITION_BACKOFF, render=PARTITION_BACKOFF,
                              email=PARTITION_BACKOFF)  # fmt: skip
        settings = make_settings(
            tmp, smtp.port, database_url=database, retry=retry,
            timeouts=PARTITION_TIMEOUTS, rate_limit_per_minute=1000,
        )  # fmt: skip
        on_worker_host = settings.model_copy(
            update={
                "database_url": _through(proxies["database"], database),
                "smtp_port": proxies["smtp"].port,
            }
        )
        worker = WorkerProcess.start(
            on_worker_host, proxies["temporal"].address, tmp / "worker.log"
        )
        stack.callback(worker.stop)
        await worker.wait_ready(WORKER_START_TIMEOUT)
        url = await stack.enter_async_context(serve_api(settings))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        host = CutOff(settings, http, worker, smtp, proxies, asyncio.get_running_loop(), tmp)
        try:
            yield host
        except Exception as err:
            err.add_note(f"--- worker.log ---\n{worker.log_tail(40)}")
            raise


# --------------------------------------------------------------------------- helpers


@dataclass
class ApiWatch:
    """What the API answered while a server was held (every few hundred ms)."""

    answers: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def record(self, path: str, response: httpx.Response) -> None:
        self.answers[response.status_code] += 1
        if response.status_code >= 500:
            self.failures.append(f"{path}: {response.status_code} {response.text[:200]}")


async def _poll_api(host: CutOff, users: list[User], ids: list[str], watch: ApiWatch) -> None:
    while True:
        for user, report_id in zip(users, ids, strict=True):
            for path in (f"/reports/{report_id}", "/reports?status=running"):
                watch.record(path, await host.http.get(path, headers=user.headers))
        watch.record("/readyz", await host.http.get("/readyz"))
        await asyncio.sleep(0.25)


async def _hold_while_polling(
    host: CutOff, name: str, users: list[User], ids: list[str], seconds: float
) -> ApiWatch:
    """Hold `name`'s proxy for `seconds` (from now, or from when a hook held it)
    while polling the API; release; return what the API answered."""
    proxy = host.proxies[name]
    proxy.hold()
    watch = ApiWatch()
    poller = asyncio.create_task(_poll_api(host, users, ids, watch))
    try:
        await asyncio.sleep(seconds)  # the outage's length is the point: nothing to wait on
        assert host.worker.alive, "the worker exited during the partition"
    finally:
        proxy.release()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    return watch


def _one_email_each(host: CutOff, users: list[User], done: list[dict[str, Any]]) -> None:
    for user, doc in zip(users, done, strict=True):
        messages = host.smtp.messages_to(user.email or "")
        ids = [m["Message-ID"] for m in messages]
        assert ids == [doc["result"]["message_id"]], (doc["report_id"], ids)


async def _first_completed(host: CutOff, users: list[User], ids: list[str]) -> None:
    async def probe() -> list[str]:
        docs = await asyncio.gather(
            *(
                host.http.get(f"/reports/{i}", headers=u.headers)
                for u, i in zip(users, ids, strict=True)
            )
        )
        return [d.json()["status"] for d in docs]

    statuses = await wait_until(
        probe, lambda s: "completed" in s, timeout=REPORT_TIMEOUT, what="a first report"
    )
    assert not all(s in FINAL for s in statuses), f"nothing left in flight to partition: {statuses}"


# --------------------------------------------------------------------------- the proxy


@contextlib.asynccontextmanager
async def _echo() -> AsyncIterator[tuple[asyncio.Server, list[bytes]]]:
    """An echo server on loopback; the list gathers every chunk it received."""
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                got.append(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server, got


async def _nothing_within(reader: asyncio.StreamReader, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await reader.read(1)


async def test_proxy_hold_keeps_connections_open_and_moves_no_byte_until_release() -> None:
    async with _echo() as (server, got):
        port = server.sockets[0].getsockname()[1]
        async with HoldingProxy("127.0.0.1", port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"

            proxy.hold()
            writer.write(b"during")
            await writer.drain()  # a held peer still takes writes (into buffers)
            late_reader, late_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            late_writer.write(b"late")  # accepted, but nothing opened upstream
            await _nothing_within(reader)
            await _nothing_within(late_reader)
            assert got == [b"before"]
            assert proxy.connections == 2

            proxy.release()
            assert await reader.readexactly(6) == b"during"
            assert await late_reader.readexactly(4) == b"late"
            for each in (writer, late_writer):
                each.close()


async def test_proxy_drop_resets_open_connections_and_serves_new_ones() -> None:
    async with (
        _echo() as (server, _),
        HoldingProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        proxy.drop()
        with contextlib.suppress(ConnectionError):
            assert await reader.read(1) == b""
        again_reader, again_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        again_writer.write(b"y")
        assert await again_reader.readexactly(1) == b"y"
        for each in (writer, again_writer):
            each.close()


async def test_proxy_discards_what_a_side_sent_before_resetting_during_a_hold() -> None:
    async with (
        _echo() as (server, got),
        HoldingProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        proxy.hold()
        writer.write(b"never crossed")
        await writer.drain()
        # A reset (SO_LINGER 0): its kernel drops what the partition kept from crossing.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        await writer.wait_closed()
        proxy.release()
        await wait_for(lambda: proxy.connections == 0, timeout=10, what="the link closed")
        assert got == [b"a"]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("server", ["temporal", "smtp", "database"])
async def test_worker_partitioned_from_a_server_comes_back_and_keeps_serving(
    cut_off: CutOff, server: str
) -> None:
    users = await cut_off.new_users(REPORTS)
    ids = await cut_off.start_reports(users)
    await _first_completed(cut_off, users, ids)

    held_at = time.monotonic()
    watch = await _hold_while_polling(cut_off, server, users, ids, HOLD_SECONDS)
    assert not watch.failures, watch.failures
    assert watch.answers[200] > 0, watch.answers

    done = await cut_off.wait_final(users, ids)
    recovered = time.monotonic() - held_at - HOLD_SECONDS
    assert [d["status"] for d in done] == ["completed"] * REPORTS, done
    _one_email_each(cut_off, users, done)

    # The same worker, alone, serves what comes after.
    later = await cut_off.new_users(1)
    after = await cut_off.wait_final(later, await cut_off.start_reports(later))
    assert after[0]["status"] == "completed", after
    _one_email_each(cut_off, later, after)
    assert cut_off.worker.alive
    log.info("%s held %.0f s: every report done %.1f s after the release, API %s",
             server, HOLD_SECONDS, recovered, dict(watch.answers))  # fmt: skip


async def test_database_connection_into_a_partition_gives_up_within_its_connect_timeout(
    cut_off: CutOff,
) -> None:
    """asyncpg alone waits 60 s for a connection nobody answers, as long as a whole
    query attempt; the worker's engine gives up after its own connect timeout."""
    proxy = cut_off.proxies["database"]
    engine = create_engine(_through(proxy, cut_off.settings.database_url))
    proxy.hold()
    began = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(POSTGRES_CONNECT_TIMEOUT_SECONDS + 10):
                async with engine.connect() as conn:
                    await conn.execute(text("select 1"))
        waited = time.monotonic() - began
        assert waited < POSTGRES_CONNECT_TIMEOUT_SECONDS + 5, waited
    finally:
        proxy.release()
        await engine.dispose()


async def test_database_held_as_the_server_accepts_sends_one_email(cut_off: CutOff) -> None:
    [user] = await cut_off.new_users(1)
    cut_off.smtp.handler.on_accept = cut_off.hold_from_smtp_thread("database")
    [report_id] = await cut_off.start_reports([user])
    await wait_for(lambda: cut_off.proxies["database"].held, timeout=REPORT_TIMEOUT,
                   what="the database held at the 250")  # fmt: skip
    # Held before the 250 left the SMTP server: the worker has it and cannot record
    # it. Longer than a statement or a connect may wait, so every database call the
    # worker began during the hold failed (the ledger says "claimed", never "sent"),
    # and longer than the claim's lease: the attempt after the hold may send.
    seconds = 40.0
    watch = await _hold_while_polling(cut_off, "database", [user], [report_id], seconds)
    assert not watch.failures, watch.failures
    [done] = await cut_off.wait_final([user], [report_id])
    assert done["status"] == "completed", done
    _one_email_each(cut_off, [user], [done])


async def test_smtp_held_as_the_server_accepts_sends_a_copy_with_the_same_message_id(
    cut_off: CutOff,
) -> None:
    """The honest limit of SMTP: a 250 that never reaches the sender leaves it
    unable to tell delivered from lost, so it sends again. The copy carries the
    same Message-ID, which relays and mail clients use to drop duplicates."""
    [user] = await cut_off.new_users(1)
    cut_off.smtp.handler.on_accept = cut_off.hold_from_smtp_thread("smtp")
    [report_id] = await cut_off.start_reports([user])
    await wait_for(lambda: cut_off.proxies["smtp"].held, timeout=REPORT_TIMEOUT,
                   what="SMTP held at the 250")  # fmt: skip
    # Longer than one email attempt's SMTP deadline, so that attempt gives up.
    seconds = PARTITION_TIMEOUTS.email
    watch = await _hold_while_polling(cut_off, "smtp", [user], [report_id], seconds)
    assert not watch.failures, watch.failures
    [done] = await cut_off.wait_final([user], [report_id])
    assert done["status"] == "completed", done
    ids = [m["Message-ID"] for m in cut_off.smtp.messages_to(user.email or "")]
    assert ids == [done["result"]["message_id"]] * 2, ids
