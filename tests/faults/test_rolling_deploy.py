"""A rolling deploy with Temporal Worker Versioning: build v2 becomes current while
a report runs on build v1. The running report stays pinned to v1 and finishes
there; new reports go to v2. So a change to GenerateReport never meets the
history of a run that an older build started (tests/test_replay.py guards the
unversioned path, where old histories do replay against new code)."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import RoutingConfigUpdateState, VersioningBehavior
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from reportflow.core.config import Settings
from reportflow.service.history import activity_starts
from reportflow_dev.testing import WorkerProcess, kill_chromiums
from tests.faults.test_worker_crash import (
    WORKER_START_TIMEOUT,
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
    """`temporal worker deployment set-current-version`, retried until the server
    has seen the build's worker poll (it registers versions as they poll); then
    until the new routing has reached the task queues (the server propagates it
    after answering: a start a moment later could still go to the old build)."""

    async def attempt() -> bool:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id=build_id,
                    identity="reportflow-test-deploy",
                )
            )
        except RPCError:
            return False
        return True

    await wait_until(attempt, bool, timeout=WORKER_START_TIMEOUT, what=f"{build_id} current")

    async def routing() -> tuple[str, int]:
        info = (
            await client.workflow_service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(
                    namespace=client.namespace, deployment_name=deployment
                )
            )
        ).worker_deployment_info
        current = info.routing_config.current_deployment_version.build_id
        return current, info.routing_config_update_state

    await wait_until(
        routing,
        lambda got: (
            got == (build_id, RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED)
        ),
        timeout=WORKER_START_TIMEOUT,
        what=f"the routing to {build_id} propagated",
    )


def versioned(settings: Settings, build_id: str) -> Settings:
    return settings.model_copy(update={"worker_build_id": build_id})


async def _pids(client: Client, report_id: str) -> set[str]:
    """Which worker processes ran this report's activities on its own task queue
    (identity `<pid>@host`). The email step runs on the rate-limited email queue,
    which any build's workers serve: it is not pinned to the report's build (see
    README, Deploys), so it is left out here."""
    starts = await activity_starts(client, report_id)
    return {s.identity.split("@")[0] for s in starts if s.activity != "send_email"}


async def test_running_report_stays_on_its_build_while_new_ones_go_to_the_next(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    deployment = f"reportflow-{uuid.uuid4().hex[:8]}"
    client = temporal_env.client
    async with own_stack(
        tmp_path, smtp, temporal_env, worker_deployment_name=deployment, worker_build_id="v1"
    ) as stack:
        v1 = WorkerProcess.start(stack.settings, stack.temporal_address, tmp_path / "worker-v1.log")
        v2: WorkerProcess | None = None
        chromium = 0
        try:
            chromium = await wait_for_browser(v1)
            await set_current(client, deployment, "v1")
            os.kill(chromium, signal.SIGSTOP)  # hold v1's render mid-flight
            old = await stack.request_report()
            render = await wait_render_started(client, old)
            assert render.last_worker_identity.startswith(identity_of(v1))

            # Deploy v2 beside v1 and make it current.
            v2 = WorkerProcess.start(
                versioned(stack.settings, "v2"), stack.temporal_address, tmp_path / "worker-v2.log"
            )
            await v2.wait_ready(WORKER_START_TIMEOUT)
            await set_current(client, deployment, "v2")

            # A new report (another range, so another ID) runs on v2 alone.
            start, end = last_90_days()
            body = {"start": str(start + timedelta(days=1)), "end": str(end)}
            response = await stack.http.post("/reports", json=body, headers=stack.user.headers)
            assert response.status_code == 202, response.text
            new = response.json()["report_id"]
            await wait_completed(stack, new)
            assert await _pids(client, new) == {str(v2.pid)}

            # The old one, pinned to v1, finishes there once its browser wakes.
            info = (await client.get_workflow_handle(old).describe()).raw_description
            versioning = info.workflow_execution_info.versioning_info
            assert versioning.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
            assert versioning.deployment_version.build_id == "v1"
            os.kill(chromium, signal.SIGCONT)
            await wait_completed(stack, old)
            assert await _pids(client, old) == {str(v1.pid)}
        finally:
            kill_chromiums([chromium] if chromium else [])
            v1.stop()
            if v2 is not None:
                v2.stop()
