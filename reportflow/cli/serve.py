"""`reportflow dev`, `api` and `worker`: the commands that run the service."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from reportflow.core.config import Settings, get_settings, require_secrets

app = typer.Typer()


@app.command("dev", help="run everything locally: Temporal, SMTP sink, worker, API, demo data")
def dev(
    public: Annotated[
        bool,
        typer.Option("--public", help="allow a non-loopback HOST (the outbox stays loopback-only)"),
    ] = False,
) -> None:
    from reportflow.core import tracing
    from reportflow.core.logs import setup_logging
    from reportflow.dev import run_dev

    # Short human lines, libraries quiet: the banner is what a newcomer reads.
    setup_logging(dev=True)
    tracing.configure("reportflow")
    asyncio.run(run_dev(get_settings(), public=public))


@app.command("api", help="run the HTTP API")
def api(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default PORT or 8000)")] = None,
) -> None:
    import uvicorn

    from reportflow.core import tracing

    tracing.configure("reportflow-api")
    settings = get_settings()
    require_secrets(settings, "api")
    require_kinds(settings, "api")
    uvicorn.run(
        "reportflow.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
    )


@app.command("worker", help="run a Temporal worker")
def worker() -> None:
    from reportflow.core import tracing
    from reportflow.worker import run_worker

    tracing.configure("reportflow-worker")
    require_secrets(get_settings(), "worker")
    require_kinds(get_settings(), "worker")
    asyncio.run(run_worker(get_settings()))


def require_kinds(settings: Settings, command: str) -> None:
    """A wrong report kind stops the process before it serves anything, with a
    sentence naming the module and what is wrong (not a traceback from a worker)."""
    from reportflow.kinds import KindError, load_kinds

    try:
        load_kinds(settings.report_kinds)
    except KindError as err:
        sys.stderr.write(f"reportflow {command}: {err}\n")
        raise typer.Exit(2) from None
