"""`reportflow dev`: the whole service on one machine with no external servers.

Each component with no setting of its own gets its embedded default: the
Temporal dev server (from the lock file, state in var/temporal.db, Web UI on
:8233), the SMTP sink (var/outbox/), the SQLite database with demo data, the
report store in var/reports/. Then the worker and the API run in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import PlainTextResponse
from temporalio.testing import WorkflowEnvironment

from reportflow.api.app import create_app
from reportflow.api.routes.codec import origin_of
from reportflow.core.codec import Keyring, new_key_entry
from reportflow.core.config import DEV_SECRET, VAR_DIR, Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import (
    DEV_SQLITE_ARGS,
    FAIRNESS_DEV_ARGS,
    USER_ID_KEY,
    temporal_cli_path,
)
from reportflow.core.tokens import create_token, lookup
from reportflow.seed import ensure_seeded
from reportflow.smtp_sink import start_sink
from reportflow.worker import run_worker

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

DEMO_USER = "u0001"
DEV_TEMPORAL_PORT = 7233
DEV_UI_PORT = 8233


class Server(uvicorn.Server):
    """uvicorn without signal handlers of its own, so that one Ctrl-C stops
    every part in order (its own handlers re-raise the signal after serving,
    which would kill the process before the Temporal dev server is stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def start_temporal(
    codec_endpoint: str | None = None,
    *,
    port: int = DEV_TEMPORAL_PORT,
    ui_port: int = DEV_UI_PORT,
    var: Path = VAR_DIR,
) -> WorkflowEnvironment:
    """The Temporal dev server, keeping its state across restarts; its Web UI
    decodes payloads through `codec_endpoint` (the API's /codec)."""
    var.mkdir(exist_ok=True)  # noqa: ASYNC240 - once at start
    for taken in (port, ui_port):
        if _port_in_use(taken):
            raise SystemExit(
                f"port {taken} is taken: is another `reportflow dev` or Temporal server running? "
                "Stop it, or set TEMPORAL_ADDRESS to use that server instead."
            )
    return await WorkflowEnvironment.start_local(
        ip="127.0.0.1",
        port=port,
        ui=True,
        ui_port=ui_port,
        dev_server_existing_path=temporal_cli_path(),
        dev_server_database_filename=str(var / "temporal.db"),
        search_attributes=[USER_ID_KEY],
        dev_server_log_level="error",
        dev_server_extra_args=[
            *FAIRNESS_DEV_ARGS,
            *DEV_SQLITE_ARGS,
            *(["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []),
        ],
    )


async def demo_token(engine: AsyncEngine, path: Path = VAR_DIR / "demo-token") -> str:
    """The demo user's token, kept in var/ so it survives restarts (dev only)."""
    if path.exists():  # noqa: ASYNC240 - a tiny local file, once at start
        token = path.read_text().strip()  # noqa: ASYNC240
        if await lookup(engine, token) is not None:
            return token
    token = await create_token(engine, user_id=DEMO_USER, label="demo (reportflow dev)")
    path.write_text(token + "\n")  # noqa: ASYNC240
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host of a Host header without its port: `[::1]:8000` -> `::1`."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class LoopbackHosts:
    """400 for a request whose Host header is not localhost or a loopback address.

    A page on an attacker's site can point its own name at 127.0.0.1 (DNS
    rebinding) and then read this server as same-origin: the demo token in the
    page, the outbox. Its requests still carry the attacker's name as Host, so
    they stop here. `only_prefix` limits the check to the paths under it
    (`--public` keeps it on /dev/ alone).
    """

    def __init__(self, app: ASGIApp, only_prefix: str | None = None) -> None:
        self.app = app
        self.only_prefix = only_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"} and (
            self.only_prefix is None or scope["path"].startswith(self.only_prefix)
        ):
            raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not is_loopback(host_of(raw.strip().lower())):
                refusal = PlainTextResponse(
                    f"reportflow dev answers only to localhost and loopback addresses, not "
                    f"Host {raw[:100]!r}; open http://localhost:<port>/ instead",
                    status_code=400,
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def dev_app(
    settings: Settings, *, outbox: Path | None, token: str, public: bool = False
) -> FastAPI:
    """The API as `reportflow dev` serves it. On loopback: the demo token filled in
    on the page, the Web UI's codec without a token, Host headers checked. With
    `--public`: none of the first two, and the Host check on /dev/ (the outbox) only."""
    app = create_app(
        settings,
        dev_outbox=outbox,
        demo_token=None if public else token,
        # The embedded Web UI cannot send a token; on loopback it may decode without one.
        dev_codec_origin=None if public else origin_of(settings.temporal_ui_url),
    )
    app.add_middleware(LoopbackHosts, only_prefix="/dev/" if public else None)
    return app


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """A development secret kept in var/ (owner-only), made on first use."""
    if not path.exists():
        path.write_text(make() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def dev_secrets(settings: Settings, var: Path = VAR_DIR) -> Settings:
    """SECRET_KEY and PAYLOAD_ENCRYPTION_KEYS from the environment, else development
    ones kept in var/secret-key and var/payload-keys (`reportflow dev` only)."""
    var.mkdir(exist_ok=True)
    update: dict[str, object] = {}
    if settings.secret_key == DEV_SECRET:
        update["secret_key"] = _kept_secret(var / "secret-key", lambda: secrets.token_urlsafe(32))
    if not settings.payload_encryption_keys.get_secret_value().strip():
        keys = _kept_secret(var / "payload-keys", lambda: new_key_entry("dev1"))
        Keyring.parse(keys)  # an edited file that does not parse stops here, saying why
        update["payload_encryption_keys"] = SecretStr(keys)
    return settings.model_copy(update=update)


async def run_dev(settings: Settings, *, public: bool = False) -> None:
    if not public and not is_loopback(settings.host):
        raise SystemExit(
            f"HOST={settings.host} is not a loopback address: `reportflow dev` serves demo "
            "data, a demo token and development keys. Use HOST=127.0.0.1, or pass --public "
            "if you mean to expose it (the outbox and the token-less Web UI codec stay "
            "loopback-only)."
        )
    VAR_DIR.mkdir(exist_ok=True)
    # Whatever .env says: dev behaviour (migrations at boot, open /metrics, no
    # required sandbox) belongs to this command alone. The environment variable
    # too, so every part of this process that reads the settings agrees.
    os.environ["ENVIRONMENT"] = "dev"
    settings = dev_secrets(settings.model_copy(update={"environment": "dev"}))
    codec_endpoint = f"http://localhost:{settings.port}/codec"
    temporal: WorkflowEnvironment | None = None
    if not os.environ.get("TEMPORAL_ADDRESS"):
        temporal = await start_temporal(codec_endpoint)
        os.environ["TEMPORAL_ADDRESS"] = f"127.0.0.1:{DEV_TEMPORAL_PORT}"
    sink = None
    if not os.environ.get("SMTP_HOST"):
        sink = start_sink(settings.smtp_host, settings.smtp_port, VAR_DIR / "outbox")

    engine = create_engine(settings.database_url)
    await create_schema(engine)
    await ensure_seeded(engine)
    token = await demo_token(engine)
    await engine.dispose()

    app = dev_app(settings, outbox=VAR_DIR / "outbox" if sink else None, token=token, public=public)
    server = Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None))
    stop = asyncio.Event()

    def shutdown() -> None:
        server.should_exit = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)
    # The worker connects a client of its own, with the metrics runtime.
    polling = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop, ready=polling))
    serving = asyncio.create_task(server.serve())
    base = f"http://localhost:{settings.port}"
    try:
        # The banner comes last, once every part answers, so no start-up line buries it.
        if not await _all_ready(serving, worker, polling, _probe_url(settings.host, settings.port)):
            return  # stopped or failed during start-up: awaiting the part below says why
        _print_banner(
            settings, base, codec_endpoint, token, temporal=bool(temporal), sink=bool(sink)
        )
        await serving
    finally:
        stop.set()
        if not serving.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        if sink:
            sink.stop()
        if temporal:
            await temporal.shutdown()


def _probe_url(host: str, port: int) -> str:
    """Where this process reaches its own API's /readyz (a wildcard bind answers on loopback)."""
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/readyz"


async def _all_ready(
    serving: asyncio.Task[None],
    worker: asyncio.Task[None],
    polling: asyncio.Event,
    readyz: str,
    *,
    interval: float = 0.2,
) -> bool:
    """True once the API's /readyz says ready and the worker polls; False when
    either stops first (a Ctrl-C during start-up, a part that failed: its error is logged)."""

    async def answers() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(readyz)).status_code == 200:
                        break
                await asyncio.sleep(interval)
        await polling.wait()

    waiting = asyncio.create_task(answers())
    try:
        await asyncio.wait({waiting, serving, worker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return waiting.done() and not waiting.cancelled() and waiting.exception() is None


def _print_banner(
    settings: Settings, base: str, codec_endpoint: str, token: str, *, temporal: bool, sink: bool
) -> None:
    sys.stdout.write(
        "\nreportflow is running\n"
        f"  web page       {base}/\n"
        f"  API docs       {base}/docs\n"
        f"  Temporal UI    {settings.temporal_ui_url}  (decodes through {codec_endpoint}"
        + ("; task-queue fairness on)\n" if temporal else ")\n")
        + (f"  outbox         {base}/dev/outbox  (files in var/outbox/)\n" if sink else "")
        + f"  demo user      {DEMO_USER}\n"
        f"  demo token     {token}\n\n"
        f"  try: curl -X POST -H 'Authorization: Bearer {token}' {base}/reports\n\n"
    )
    sys.stdout.flush()
