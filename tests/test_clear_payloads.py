"""Payloads nobody encrypted: what an outsider who reaches Temporal's frontend
can write without the keyring, done with the real `temporal` CLI, as they would.

Outside `reportflow dev` a worker refuses such payloads: a start written in clear
fails its run before any step (nobody is emailed), and a signal written in clear
is dropped while the run it targeted goes on and completes. The same start and
signal made through the API's codec endpoint (as docs/operating.md shows ops)
work: the controls, which also prove each refusal could have failed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from reportflow.core.codec import UNENCRYPTED_ERROR
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.service.reports import NotRedrivable, redrive
from tests.conftest import TemporalCli, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api
from tests.utils.wait import wait_until


@dataclass
class Stack:
    settings: Settings
    http: httpx.AsyncClient
    codec: tuple[str, str]  # (API URL, admin token) for the CLI's --codec-endpoint
    user_id: str
    user: Bearer
    # Addresses of this test's own (the SMTP server keeps every test's mail).
    outsider: str = field(
        default_factory=lambda: f"outsider-{uuid.uuid4().hex[:8]}@attacker.example"
    )
    ops: str = field(default_factory=lambda: f"ops-{uuid.uuid4().hex[:8]}@example.com")

    @property
    def address(self) -> str:
        return f"{self.user_id}@example.com"


@pytest.fixture
async def stack(tmp_path: Path, smtp: SmtpServer, temporal_client: Client) -> AsyncIterator[Stack]:
    # One running report per user: a second one waits in the workflow for the slot.
    settings = make_settings(tmp_path, smtp.port, max_running_reports_per_user=1)
    assert settings.refuses_clear_payloads  # everywhere but `reportflow dev`
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    admin = await create_token(engine, admin=True)
    await engine.dispose()
    async with (
        serve_api(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
        in_process_worker(settings, temporal_client),
    ):
        yield Stack(settings, http, (url, admin), user_id, user)


def _start_args(s: Stack, workflow_id: str) -> list[str]:
    """`temporal workflow start` of a report of the user's, with the outsider added."""
    end = date.today()
    workflow_input = {
        "report_id": workflow_id,
        "user_id": s.user_id,
        "start": (end - timedelta(days=30)).isoformat(),
        "end": end.isoformat(),
        "recipients": [s.outsider],
    }
    return [
        "workflow", "start",
        "--type", "GenerateReport",
        "--task-queue", s.settings.task_queue,
        "--workflow-id", workflow_id,
        "--input", json.dumps(workflow_input),
    ]  # fmt: skip


async def test_a_start_written_in_clear_emails_nobody(
    stack: Stack, smtp: SmtpServer, temporal_client: Client, temporal_cli: TemporalCli
) -> None:
    forged = f"report-{stack.user_id}-forged-{uuid.uuid4().hex[:6]}"
    await temporal_cli(*_start_args(stack, forged))
    with pytest.raises(WorkflowFailureError) as failed:
        await temporal_client.get_workflow_handle(forged).result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == UNENCRYPTED_ERROR
    assert "not encrypted" in cause.message
    # Not wedged: the run is closed as failed, no step was scheduled.
    history = await temporal_client.get_workflow_handle(forged).fetch_history()
    kinds = {event.event_type for event in history.events}
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED in kinds
    # The dead-letter redrive (which reads the run's memo) will not run it again.
    with pytest.raises(NotRedrivable, match="not started by reportflow"):
        await redrive(temporal_client, stack.settings, forged)

    # The control: the same start through the codec endpoint is obeyed.
    allowed = f"report-{stack.user_id}-ops-{uuid.uuid4().hex[:6]}"
    await temporal_cli(*_start_args(stack, allowed), codec=stack.codec)
    result = await temporal_client.get_workflow_handle(allowed).result()
    for address in (stack.address, stack.outsider):
        [message] = smtp.messages_to(address)  # the control's, and nothing before it
        assert message["Message-ID"].strip() == result["message_id"]


async def test_a_signal_written_in_clear_is_dropped_and_the_run_completes(
    stack: Stack,
    smtp: SmtpServer,
    temporal_client: Client,
    temporal_cli: TemporalCli,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first report holds the user's one slot, its email held at the server's 250.
    gate = smtp.gate_250(to=stack.address)
    end = date.today()
    first = await stack.http.post(
        "/reports",
        json={"start": (end - timedelta(days=10)).isoformat(), "end": end.isoformat()},
        headers=stack.user.headers,
    )
    await gate.wait_reached()
    posted = await stack.http.post("/reports", json={}, headers=stack.user.headers)
    report_id = posted.json()["report_id"]
    handle = temporal_client.get_workflow_handle(report_id)

    async def workflow_tasks_done() -> int:
        history = await handle.fetch_history()
        done = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        return sum(event.event_type == done for event in history.events)

    # The run is live: the worker has run its start and it waits for the slot.
    started_tasks = await wait_until(workflow_tasks_done, lambda n: n >= 1, what="first task")
    signal = ["workflow", "signal", "--workflow-id", report_id, "--name", "add_recipient"]
    with caplog.at_level(logging.WARNING):
        await temporal_cli(*signal, "--input", json.dumps(stack.outsider))
        await wait_until(
            workflow_tasks_done, lambda n: n > started_tasks, what="the forged signal's task"
        )
        assert "dropping the signal" in caplog.text
    # The control: the same signal through the codec endpoint is obeyed.
    await temporal_cli(*signal, "--input", json.dumps(stack.ops), codec=stack.codec)

    gate.open()
    first_doc = await wait_status(stack.http, stack.user, first.json()["report_id"], FINAL)
    doc = await wait_status(stack.http, stack.user, report_id, FINAL)
    assert first_doc["status"] == doc["status"] == "completed"
    assert doc["result"]["emailed_to"] == [stack.address, stack.ops]
    assert smtp.messages_to(stack.outsider) == []
    assert [m["Message-ID"].strip() for m in smtp.messages_to(stack.ops)] == [
        doc["result"]["message_id"]
    ]
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
