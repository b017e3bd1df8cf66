"""Workers and an API replica as if on three hosts: each process runs from a working
directory of its own (no shared var/), and they share only Temporal, PostgreSQL,
the S3 report store (moto's S3-protocol server) and SMTP.

Reports complete, both workers take work, every PDF downloads through the API
whichever worker rendered it, and a worker SIGKILLed mid-render loses nothing:
the render is retried on the other host and one email goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.service.history import activity_starts
from reportflow_dev.testing import ApiProcess, WorkerProcess, kill_chromiums
from tests.conftest import User, make_settings
from tests.faults.test_worker_crash import (
    WORKER_START_TIMEOUT,
    identity_of,
    render_starts,
    wait_for_browser,
    wait_render_started,
)
from tests.utils.data import create_user, sample_transactions
from tests.utils.postgres import scratch_database
from tests.utils.reportflow_http import FINAL, download_pdf, last_90_days, wait_status
from tests.utils.s3 import S3Server, aws_env, s3_server
from tests.utils.smtp import SmtpServer

pytestmark = pytest.mark.faults

REPORTS = 6
REPORT_TIMEOUT = 180.0


@dataclass
class Hosts:
    settings: Settings
    api: ApiProcess
    workers: list[WorkerProcess]
    dirs: list[Path]
    s3: S3Server
    bucket: str

    def worker_of(self, identity: str) -> WorkerProcess:
        return next(w for w in self.workers if identity.startswith(identity_of(w)))


@contextlib.contextmanager
def _processes(
    settings: Settings, address: str, root: Path
) -> Iterator[tuple[ApiProcess, list[WorkerProcess], list[Path]]]:
    """The API and two workers, each started in a directory of its own."""
    dirs = [root / name for name in ("host-api", "host-worker-1", "host-worker-2")]
    for path in dirs:
        path.mkdir()
    api = ApiProcess.start(settings, address, root / "api.log", cwd=dirs[0])
    workers: list[WorkerProcess] = []
    try:
        for n, path in enumerate(dirs[1:], start=1):
            log = root / f"worker-{n}.log"
            workers.append(WorkerProcess.start(settings, address, log, cwd=path))
        yield api, workers, dirs
    finally:
        for worker in workers:
            worker.stop()
        api.stop()


@contextlib.asynccontextmanager
async def three_hosts(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Hosts]:
    address = temporal_env.client.service_client.config.target_host
    with s3_server() as s3, aws_env(s3):  # the processes inherit the AWS_* variables
        bucket = s3.create_bucket()
        async with scratch_database("rf_hosts") as database:
            settings = make_settings(
                tmp_path,
                smtp.port,
                database_url=database,
                report_store_url=f"s3://{bucket}/pdfs",
                # One activity at a time per worker: a burst of reports needs both.
                worker_max_concurrent_activities=1,
                rate_limit_per_minute=100,
            )
            engine = create_engine(database)
            await create_schema(engine)
            await engine.dispose()
            with _processes(settings, address, tmp_path) as (api, workers, dirs):
                await asyncio.gather(
                    api.wait_ready(), *(w.wait_ready(WORKER_START_TIMEOUT) for w in workers)
                )
                try:
                    yield Hosts(settings, api, workers, dirs, s3, bucket)
                except Exception as err:
                    for log in sorted(tmp_path.glob("*.log")):
                        tail = log.read_text(errors="replace").splitlines()[-20:]
                        err.add_note(f"--- {log.name} ---\n" + "\n".join(tail))
                    raise


async def _users(database: str, count: int) -> list[User]:
    engine = create_engine(database)
    start, _ = last_90_days()
    try:
        users = []
        for n in range(count):
            user_id = await create_user(engine, transactions=sample_transactions(start, 90, n))
            token = await create_token(engine, user_id=user_id)
            users.append(User(user_id, f"{user_id}@example.com", token))
        return users
    finally:
        await engine.dispose()


async def _worker_pids(client: Client, report_id: str) -> set[str]:
    """Which worker processes ran this report's activities (identity `<pid>@host`)."""
    return {start.identity.split("@")[0] for start in await activity_starts(client, report_id)}


async def _assert_one_email_with(smtp: SmtpServer, user: User, pdf: bytes) -> None:
    message = await smtp.wait_for_message(user.email or "")
    assert len(smtp.messages_to(user.email or "")) == 1
    assert next(message.iter_attachments()).get_content() == pdf


async def test_reports_spread_over_two_worker_hosts_and_download_through_the_api(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    async with three_hosts(tmp_path, smtp, temporal_env) as hosts:
        users = await _users(hosts.settings.database_url, REPORTS)
        async with httpx.AsyncClient(base_url=hosts.api.url, timeout=30) as http:
            created = await asyncio.gather(
                *(http.post("/reports", headers=user.headers) for user in users)
            )
            assert [r.status_code for r in created] == [202] * REPORTS
            ids = [r.json()["report_id"] for r in created]
            done = await asyncio.gather(
                *(
                    wait_status(http, user, report_id, FINAL, timeout=REPORT_TIMEOUT)
                    for user, report_id in zip(users, ids, strict=True)
                )
            )
            assert [d["status"] for d in done] == ["completed"] * REPORTS, done

            worked: set[str] = set()
            for report_id in ids:
                worked |= await _worker_pids(temporal_env.client, report_id)
            assert worked == {str(w.pid) for w in hosts.workers}, "both worker hosts take work"

            for user, report_id in zip(users, ids, strict=True):
                pdf = await download_pdf(http, user, report_id)
                await _assert_one_email_with(smtp, user, pdf)

        assert hosts.s3.keys(hosts.bucket) == sorted(
            f"pdfs/{d['report_id']}/{d['run_id']}.pdf" for d in done
        )
        for path in hosts.dirs:  # nothing landed on a host's own disk
            assert not (path / "var" / "reports").exists(), path


async def test_worker_host_killed_mid_render_loses_nothing(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    async with three_hosts(tmp_path, smtp, temporal_env) as hosts:
        [user] = await _users(hosts.settings.database_url, 1)
        # Both browsers frozen: whichever worker takes the render holds it mid-flight.
        browsers = {w.pid: await wait_for_browser(w) for w in hosts.workers}
        for pid in browsers.values():
            os.kill(pid, signal.SIGSTOP)
        try:
            async with httpx.AsyncClient(base_url=hosts.api.url, timeout=30) as http:
                created = await http.post("/reports", headers=user.headers)
                report_id = created.json()["report_id"]
                render = await wait_render_started(temporal_env.client, report_id)
                victim = hosts.worker_of(render.last_worker_identity)
                survivor = next(w for w in hosts.workers if w is not victim)

                victim.kill_all()
                os.kill(browsers[survivor.pid], signal.SIGCONT)

                done = await wait_status(http, user, report_id, FINAL, timeout=REPORT_TIMEOUT)
                assert done["status"] == "completed", done
                [start] = await render_starts(temporal_env.client, report_id)
                assert start.attempt >= 2, start
                assert start.identity.startswith(identity_of(survivor)), start
                await _assert_one_email_with(smtp, user, await download_pdf(http, user, report_id))
        finally:
            kill_chromiums(browsers.values())
