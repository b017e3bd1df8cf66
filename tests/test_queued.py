"""The API answers with no worker running; the work waits durably for one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api


async def test_post_answers_202_with_no_worker_and_a_later_worker_completes_it(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    settings = make_settings(tmp_path, smtp.port)  # a task queue no worker polls yet
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()

    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        began = time.monotonic()
        created = await http.post("/reports", json={}, headers=user.headers)
        answered_in = time.monotonic() - began

        assert created.status_code == 202, created.text
        assert answered_in < 5, "the API must not wait for the work"
        report_id = created.json()["report_id"]
        status = await http.get(f"/reports/{report_id}", headers=user.headers)
        assert status.json()["status"] == "queued"
        assert status.json()["stage"] == "queued"
        assert status.headers["Retry-After"]

        async with in_process_worker(settings, temporal_client):
            done = await wait_status(http, user, report_id, FINAL)

    assert done["status"] == "completed"
    assert len(smtp.messages_to(f"{user_id}@example.com")) == 1
