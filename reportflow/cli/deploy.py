"""`reportflow deploy build-id|promote|status`: blue-green deploys of the workers.

The workers of a build join Worker Deployment WORKER_DEPLOYMENT_NAME as build
WORKER_BUILD_ID (default: a hash of the workflow sources); `promote` makes a build
current once its workers poll, `status` shows whether the previous one drained.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from reportflow.core.config import Settings, get_settings

app = typer.Typer()
deploy = typer.Typer(no_args_is_help=True)
app.add_typer(
    deploy,
    name="deploy",
    short_help="blue-green deploys: a worker build's ID, make it current, see the old one drain",
    help="Talks to Temporal directly (TEMPORAL_ADDRESS etc.). See docs/operating.md, Deploys.",
)

BuildId = Annotated[
    str | None,
    typer.Option(help="the build (default: this code's, as `reportflow deploy build-id` prints)"),
]


def _build(settings: Settings, build_id: str | None) -> str:
    from reportflow.workflows.build import workflows_build_id

    return build_id or settings.worker_build_id or workflows_build_id()


@deploy.command("build-id", help="the build ID this code's workers run as")
def build_id() -> None:
    sys.stdout.write(_build(get_settings(), None) + "\n")


@deploy.command("promote", help="make a build current: new reports start on it")
def promote(
    build_id: BuildId = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for its workers")] = 120.0,
) -> None:
    from reportflow.core.temporal import connect
    from reportflow.service import deploy as service

    settings = get_settings()
    build = _build(settings, build_id)

    async def run() -> int:
        client = await connect(settings)
        before = await service.current_build(client, settings.worker_deployment_name)
        try:
            async with asyncio.timeout(timeout):
                await service.promote(client, settings.worker_deployment_name, build)
        except TimeoutError:
            sys.stderr.write(
                f"build {build} is not current after {timeout:g}s: are its workers polling "
                f"(deployment {settings.worker_deployment_name!r})?\n"
            )
            return 1
        sys.stdout.write(
            f"{settings.worker_deployment_name}: {build} is current (was {before or 'none'}); "
            f"runs pinned to {before or 'it'} finish there: `reportflow deploy status "
            f"--build-id {before}` says when it drained\n"
            if before and before != build
            else f"{settings.worker_deployment_name}: {build} is current\n"
        )
        return 0

    raise typer.Exit(asyncio.run(run()))


@deploy.command("status", help="a build's status and drainage (drained: stop its workers)")
def status(build_id: BuildId = None) -> None:
    from reportflow.core.temporal import connect
    from reportflow.service import deploy as service

    settings = get_settings()
    build = _build(settings, build_id)

    async def run() -> int:
        client = await connect(settings)
        state = await service.describe_version(client, settings.worker_deployment_name, build)
        current = await service.current_build(client, settings.worker_deployment_name)
        sys.stdout.write(
            f"{settings.worker_deployment_name} {build}: {state.status}, drainage "
            f"{state.drainage}; current build {current or 'none'}\n"
        )
        return 0

    raise typer.Exit(asyncio.run(run()))
