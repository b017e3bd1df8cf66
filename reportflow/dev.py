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

import uvicorn
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from reportflow.api.app import create_app
from reportflow.api.routes.codec import origin_of
from reportflow.core.codec import Keyring, new_key_entry
from reportflow.core.config import DEV_SECRET, VAR_DIR, Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import FAIRNESS_DEV_ARGS, USER_ID_KEY, temporal_cli_path
from reportflow.core.tokens import create_token, lookup
from reportflow.seed import ensure_seeded
from reportflow.smtp_sink import start_sink
from reportflow.worker import run_worker

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
    settings = dev_secrets(settings)
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

    app = create_app(
        settings,
        dev_outbox=VAR_DIR / "outbox" if sink else None,
        demo_token=token,
        # The embedded Web UI cannot send a token; on loopback it may decode without one.
        dev_codec_origin=None if public else origin_of(settings.temporal_ui_url),
    )
    server = Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None))
    stop = asyncio.Event()

    def shutdown() -> None:
        server.should_exit = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)
    # The worker connects a client of its own, with the metrics runtime.
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    base = f"http://localhost:{settings.port}"
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
    try:
        await server.serve()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        if sink:
            sink.stop()
        if temporal:
            await temporal.shutdown()
