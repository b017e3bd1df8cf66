"""Scheduled reports on the Temporal dev server: a triggered run sends the previous
period's report once, and it is the same report a manual request for that range gets."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, WorkflowExecutionStatus

from reportflow.core.config import Settings
from reportflow.service.schedules import previous_period
from reportflow_dev.testing import settings_env
from tests.conftest import MakeUser
from tests.utils.reportflow_http import latest_run, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until


def test_previous_period_is_the_last_full_week_or_month() -> None:
    # A Monday run covers Monday to Sunday before it.
    assert previous_period("week", date(2026, 11, 30)) == (date(2026, 11, 23), date(2026, 11, 29))
    assert previous_period("month", date(2026, 11, 1)) == (date(2026, 10, 1), date(2026, 10, 31))
    assert previous_period("month", date(2026, 3, 15)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert previous_period("month", date(2027, 1, 1)) == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"every": "week", "day": "funday"}, "not a weekday"),
        ({"every": "week", "day": "monday", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": "week", "day": "monday", "time": "25:00"}, "HH:MM"),
        ({"every": "week", "day": "monday", "time": "6am"}, "HH:MM"),
        ({"every": "month", "day": 31}, "from 1 to 28"),
        ({"every": "month", "day": "monday"}, "from 1 to 28"),
        ({"every": "day", "day": 1}, "every"),
        ({"every": "month", "day": 1, "backfill": 100}, "backfill"),
    ],
)
async def test_create_schedule_rejects_bad_input(
    http: httpx.AsyncClient, make_user: MakeUser, body: dict[str, Any], says: str
) -> None:
    user = await make_user()
    response = await http.post("/schedules", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


async def _cli(settings: Settings, client: Client, *args: str) -> str:
    address = client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "reportflow"),
        "schedule",
        *args,
        env=settings_env(settings, address),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, f"reportflow schedule {' '.join(args)}: {err.decode()}"
    return out.decode()


@pytest.mark.usefixtures("worker")
async def test_triggered_schedule_sends_the_previous_week_once_and_a_manual_request_joins_it(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    temporal_client: Client,
    settings: Settings,
) -> None:
    user, other = await make_user(), await make_user()
    zone = "Europe/Berlin"
    response = await http.post(
        "/schedules",
        json={"every": "week", "day": "monday", "time": "06:00", "timezone": zone},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    doc = response.json()
    schedule_id = doc["id"]
    assert response.headers["Location"] == f"/schedules/{schedule_id}"
    assert (doc["every"], doc["day"], doc["time"], doc["paused"]) == (
        "week",
        "monday",
        "06:00",
        False,
    )
    next_run = datetime.fromisoformat(doc["next_run_at"]).astimezone(ZoneInfo(zone))
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (0, 6, 0)

    # The document's ID is the Temporal Schedule's: run it now, as ops would.
    schedule = temporal_client.get_schedule_handle(schedule_id)
    await schedule.trigger()
    start, end = previous_period("week", datetime.now(UTC).astimezone(ZoneInfo(zone)).date())
    report_id = f"report-{user.id}-{start}-{end}"

    # The Schedule's run, under `<schedule id>-<nominal time>`, starts the report.
    described = await wait_until(
        schedule.describe, lambda d: bool(d.info.recent_actions), what="the triggered run"
    )
    action = described.info.recent_actions[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    run_id = action.workflow_id
    assert run_id.startswith(f"{schedule_id}-")
    scheduled_run = temporal_client.get_workflow_handle(run_id)
    assert (await scheduled_run.result())["report_id"] == report_id

    done = await wait_status(http, user, report_id, {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed", done
    assert (done["start"], done["end"]) == (start.isoformat(), end.isoformat())
    assert len(smtp.messages_to(user.email or "")) == 1

    # A manual request for the same range is the same report and starts nothing.
    run_before = await latest_run(temporal_client, report_id)
    manual = await http.post(
        "/reports", json={"start": str(start), "end": str(end)}, headers=user.headers
    )
    assert manual.status_code == 202, manual.text
    assert manual.json()["report_id"] == report_id
    assert manual.json()["status"] == "completed"
    assert await latest_run(temporal_client, report_id) == run_before
    assert len(smtp.messages_to(user.email or "")) == 1

    # Pause, list (the API and the CLI), unpause; another user sees none of it.
    paused = await http.post(f"/schedules/{schedule_id}/pause", headers=user.headers)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    listed = await wait_until(
        lambda: http.get("/schedules", headers=user.headers),
        lambda r: [(s["id"], s["paused"]) for s in r.json()] == [(schedule_id, True)],
        what="the paused schedule in the list",
    )
    assert listed.status_code == 200
    cli_list = await _cli(settings, temporal_client, "list", "--user", user.id)
    assert schedule_id in cli_list and "paused" in cli_list
    assert (await http.get("/schedules", headers=other.headers)).json() == []
    for path in (f"/schedules/{schedule_id}/pause", f"/schedules/{schedule_id}/unpause"):
        assert (await http.post(path, headers=other.headers)).status_code == 404
    assert (
        await http.delete(f"/schedules/{schedule_id}", headers=other.headers)
    ).status_code == 404
    unpaused = await http.post(f"/schedules/{schedule_id}/unpause", headers=user.headers)
    assert unpaused.status_code == 200 and unpaused.json()["paused"] is False

    assert (await http.delete(f"/schedules/{schedule_id}", headers=user.headers)).status_code == 204
    gone = await http.post(f"/schedules/{schedule_id}/pause", headers=user.headers)
    assert gone.status_code == 404 and "GET /schedules" in gone.json()["detail"]
    scheduled = await scheduled_run.describe()
    assert scheduled.status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.usefixtures("worker")
async def test_cli_creates_a_monthly_schedule_with_a_backfill_of_past_months(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    temporal_client: Client,
    settings: Settings,
) -> None:
    user = await make_user()
    out = await _cli(
        settings,
        temporal_client,
        "create",
        "--user",
        user.id,
        "--every",
        "month",
        "--day",
        "1",
        "--time",
        "00:00",
        "--backfill",
        "2",
    )
    schedule_id = out.split()[0]
    assert schedule_id.startswith(f"schedule-{user.id}-")
    # The backfill ran the schedule at the last two nominal times (the 1st of
    # this month and of the last one, maybe the one before): each one sent the
    # month before it.
    today = datetime.now(UTC).date()
    first = today.replace(day=1)
    this_month = previous_period("month", first)
    last_month = previous_period("month", this_month[0])
    for start, end in (this_month, last_month):
        report_id = f"report-{user.id}-{start}-{end}"
        # The backfill's runs start their reports in the background, after the command.
        path = f"/reports/{report_id}"

        async def probe(path: str = path) -> httpx.Response:
            return await http.get(path, headers=user.headers)

        await wait_until(
            probe,
            lambda response: response.status_code == 200,
            timeout=120,
            what=f"{report_id} started by the backfill",
        )
        doc = await wait_status(http, user, report_id, {"completed", "failed"}, timeout=120)
        assert doc["status"] == "completed", doc
    sent = smtp.messages_to(user.email or "")
    assert 2 <= len(sent) <= 3
    assert len({m["Message-ID"] for m in sent}) == len(sent)
    await _cli(settings, temporal_client, "delete", schedule_id)
