"""Blue-green deploys with Worker Versioning: make a build current, see a build drain.

What `temporal worker deployment set-current-version` and `describe-version` do,
with the two waits a deploy script needs: the server accepts a version only once
its workers have polled, and it carries the new routing to the task queues a
moment after answering (the routing update state turns to completed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import (
    RoutingConfigUpdateState,
    VersionDrainageStatus,
    WorkerDeploymentVersionStatus,
)
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

IDENTITY = "reportflow deploy promote"


@dataclass(frozen=True)
class VersionState:
    build_id: str
    # created, current, ramping, draining, drained, inactive (describe-version).
    status: str
    # unspecified (still current, or never checked), draining, drained.
    drainage: str


async def promote(client: Client, deployment: str, build_id: str, *, interval: float = 0.5) -> None:
    """Make `build_id` the deployment's current version and wait until the routing
    reached the task queues: new workflows start on it, running ones stay pinned.

    Retries until the build's workers have polled (the server only knows a version
    once they have): bound it with `asyncio.timeout`."""
    while True:
        try:
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id=build_id,
                    identity=IDENTITY,
                )
            )
            break
        except RPCError:  # not polled yet (NotFound), or a concurrent change
            await asyncio.sleep(interval)
    done = (build_id, RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED)
    while True:
        if await _routing(client, deployment) == done:
            return
        await asyncio.sleep(interval)


async def _routing(client: Client, deployment: str) -> tuple[str, int]:
    info = (
        await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
    ).worker_deployment_info
    current = info.routing_config.current_deployment_version.build_id
    return current, info.routing_config_update_state


async def current_build(client: Client, deployment: str) -> str | None:
    """The deployment's current build ID (None: unversioned, or no such deployment)."""
    try:
        build, _ = await _routing(client, deployment)
    except RPCError:
        return None
    return build or None


async def describe_version(client: Client, deployment: str, build_id: str) -> VersionState:
    info = (
        await client.workflow_service.describe_worker_deployment_version(
            DescribeWorkerDeploymentVersionRequest(
                namespace=client.namespace,
                deployment_version=WorkerDeploymentVersion(
                    deployment_name=deployment, build_id=build_id
                ),
            )
        )
    ).worker_deployment_version_info
    status = WorkerDeploymentVersionStatus.Name(info.status)
    drainage = VersionDrainageStatus.Name(info.drainage_info.status)
    return VersionState(
        build_id=build_id,
        status=status.removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_").lower(),
        drainage=drainage.removeprefix("VERSION_DRAINAGE_STATUS_").lower(),
    )
