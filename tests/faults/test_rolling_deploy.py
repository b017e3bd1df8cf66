"""A blue-green deploy with Temporal Worker Versioning, on real worker processes:
build B becomes current while a report runs on build A. The running report stays
pinned to A and finishes there; new reports go to B; A then drains and stops. So
a change to GenerateReport never meets the history of a run that an older build
started (docs/operating.md, Deploys)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.config import Settings
from reportflow.service import deploy
from reportflow.service.history import activity_starts
from reportflow_dev.testing import WorkerProcess, kill_chromiums, settings_env
from tests.faults.test_worker_crash import (
    WORKER_START_TIMEOUT,
    Stack,
    identity_of,
    own_stack,
    wait_completed,
    wait_for_browser,
    wait_render_started,
)
from tests.utils.reportflow_http import last_90_days
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

pytestmark = pytest.mark.faults


async def set_current(client: Client, deployment: str, build_id: str) -> None:
    """`reportflow deploy promote`: once the build's workers polled, and until the
    new routing reached the task queues."""
    async with asyncio.timeout(WORKER_START_TIMEOUT):
        await deploy.promote(client, deployment, build_id)


def versioned(settings: Settings, build_id: str) -> Settings:
    return settings.model_copy(update={"worker_build_id": build_id})


async def _pids(client: Client, report_id: str) -> set[str]:
    """Which worker processes ran this report's activities on its own task queue
    (identity `<pid>@host`). The email step runs on the rate-limited email queue,
    which any build's workers serve: it is not pinned to the report's build (see
    README, Deploys), so it is left out here."""
    starts = await activity_starts(client, report_id)
    return {s.identity.split("@")[0] for s in starts if s.activity != "send_email"}


async def _message_id(stack: Stack, report_id: str) -> str:
    doc = (await stack.http.get(f"/reports/{report_id}", headers=stack.user.headers)).json()
    message_id: str = doc["result"]["message_id"]
    return message_id


async def test_blue_green_running_report_finishes_on_its_build_new_ones_on_the_next(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    """Blue A runs a report; green B starts beside it and becomes current; a new
    report runs on B alone while A's, pinned, finishes on A; A is then no longer
    current, has no open run, and stops; a report after that runs on B. Every
    report completes with one email."""
    deployment = f"reportflow-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with own_stack(
        tmp_path,
        smtp,
        temporal_env,
        worker_versioning=True,
        worker_deployment_name=deployment,
        worker_build_id="A",
    ) as stack:
        a = WorkerProcess.start(stack.settings, stack.temporal_address, tmp_path / "worker-A.log")
        b: WorkerProcess | None = None
        chromium = 0
        try:
            chromium = await wait_for_browser(a)
            await set_current(client, deployment, "A")
            os.kill(chromium, signal.SIGSTOP)  # hold A's render mid-flight
            old = await stack.request_report()
            render = await wait_render_started(client, old)
            assert render.last_worker_identity.startswith(identity_of(a))

            # Green: B beside A, then current.
            b = WorkerProcess.start(
                versioned(stack.settings, "B"), stack.temporal_address, tmp_path / "worker-B.log"
            )
            await b.wait_ready(WORKER_START_TIMEOUT)
            promoted = await _cli(stack, "deploy", "promote", "--build-id", "B")
            assert promoted == f"{deployment}: B is current (was A); runs pinned to A finish"
            assert (await deploy.describe_version(client, deployment, "A")).status == "draining"

            # A new report (another range, so another ID) runs on B alone.
            start, end = last_90_days()
            body = {"start": str(start + timedelta(days=1)), "end": str(end)}
            response = await stack.http.post("/reports", json=body, headers=stack.user.headers)
            assert response.status_code == 202, response.text
            new = response.json()["report_id"]
            await wait_completed(stack, new)
            assert await _pids(client, new) == {str(b.pid)}

            # The old one, pinned to A, finishes there once its browser wakes.
            info = (await client.get_workflow_handle(old).describe()).raw_description
            versioning = info.workflow_execution_info.versioning_info
            assert versioning.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
            assert versioning.deployment_version.build_id == "A"
            await _wait_open_runs_on(client, deployment, "A", 1)
            os.kill(chromium, signal.SIGCONT)
            await wait_completed(stack, old)
            assert await _pids(client, old) == {str(a.pid)}

            # A has drained (no open run pinned to it; the server's own `drained`
            # comes after its visibility grace period, minutes): stop it.
            await _wait_open_runs_on(client, deployment, "A", 0)
            a.stop()
            assert a.process.returncode == 0, a.log_tail()
            after = await stack.http.post(
                "/reports",
                json={"start": str(start + timedelta(days=2)), "end": str(end)},
                headers=stack.user.headers,
            )
            assert after.status_code == 202, after.text
            last = after.json()["report_id"]
            await wait_completed(stack, last)
            assert await _pids(client, last) == {str(b.pid)}

            status = await _cli(stack, "deploy", "status", "--build-id", "A")
            assert status.startswith(f"{deployment} A: draining, drainage "), status
            assert status.endswith("current build B"), status

            # One email per report, each the one its status names.
            sent = sorted(m["Message-ID"] for m in smtp.messages_to(stack.user.email or ""))
            assert sent == sorted([await _message_id(stack, r) for r in (old, new, last)])
        finally:
            kill_chromiums([chromium] if chromium else [])
            a.stop()
            if b is not None:
                b.stop()


async def _cli(stack: Stack, *args: str) -> str:
    """`reportflow <args>` with the stack's settings; its output up to the first `:`
    of the hint, or whole."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        *args,
        env=settings_env(stack.settings, stack.temporal_address),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WORKER_START_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().split(" there:")[0].strip()


async def _wait_open_runs_on(client: Client, deployment: str, build_id: str, n: int) -> None:
    """Until `n` open workflows are pinned to the build (what the server's drainage
    check counts; the query of docs/operating.md). Visibility is eventually
    consistent, so it is asked until it agrees."""
    query = (
        f"ExecutionStatus = 'Running' AND "
        f"TemporalWorkerDeploymentVersion = '{deployment}:{build_id}'"
    )

    async def count() -> int:
        return (await client.count_workflows(query)).count

    await wait_until(count, lambda got: got == n, timeout=30, what=f"{n} open runs on {build_id}")
