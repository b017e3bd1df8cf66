"""`reportflow dev`, `api` and `worker`: the commands that run the service."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from reportflow.core.config import get_settings, require_secrets

app = typer.Typer()


@app.command("dev", help="run everything locally: Temporal, SMTP sink, worker, API, demo data")
def dev(
    public: Annotated[
        bool,
        typer.Option("--public", help="allow a non-loopback HOST (the outbox stays loopback-only)"),
    ] = False,
) -> None:
    from reportflow.core import tracing
    from reportflow.dev import run_dev

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
    asyncio.run(run_worker(get_settings()))
