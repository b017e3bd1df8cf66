"""Alembic migrations: an empty database upgraded to head has exactly the models'
schema, goes back down to nothing, and production processes create no tables."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from reportflow import migrations
from reportflow.core.db import create_engine, ensure_schema, metadata
from reportflow_dev.testing import ApiProcess
from tests.conftest import make_settings
from tests.utils.postgres import scratch_database
from tests.utils.smtp import SmtpServer


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _round_trip(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) == set()
    assert await migrations.current(engine) is None

    await migrations.upgrade(engine)
    assert await migrations.current(engine) == migrations.head()
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        assert await conn.run_sync(_tables) == {*metadata.tables, "alembic_version"}

    await migrations.upgrade(engine)  # a second upgrade has nothing to do
    await migrations.downgrade(engine, "base")
    assert await migrations.current(engine) is None
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) == {"alembic_version"}


async def test_upgrade_postgresql_matches_models_then_downgrades() -> None:
    async with scratch_database("rf_migrate") as url:
        engine = create_engine(url)
        try:
            await _round_trip(engine)
        finally:
            await engine.dispose()


async def test_upgrade_sqlite_matches_models_then_downgrades(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await _round_trip(engine)
    finally:
        await engine.dispose()


async def test_concurrent_upgrades_postgresql_both_succeed() -> None:
    """An API and its workers upgrading one empty database at once (dev, tests)."""
    async with scratch_database("rf_migrate") as url:
        engines = [create_engine(url) for _ in range(3)]
        try:
            await asyncio.gather(*(migrations.upgrade(engine) for engine in engines))
            assert await migrations.current(engines[0]) == migrations.head()
        finally:
            for engine in engines:
                await engine.dispose()


async def test_concurrent_upgrades_sqlite_both_succeed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    engines = [create_engine(url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrations.upgrade(engine) for engine in engines))
        assert await migrations.current(engines[0]) == migrations.head()
    finally:
        for engine in engines:
            await engine.dispose()


async def test_database_from_create_all_is_stamped_then_upgraded(tmp_path: Path) -> None:
    """A dev database made before migrations existed keeps its data."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        # The tables as the old create-tables-at-boot made them: revision 0001's,
        # with no record of any revision.
        await migrations.upgrade(engine, "0001")
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        await migrations.upgrade(engine)
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()


async def test_production_boot_creates_no_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}")
    try:
        with pytest.raises(migrations.SchemaNotReady, match="reportflow db upgrade"):
            await ensure_schema(engine, migrate=False)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await migrations.upgrade(engine)
        await ensure_schema(engine, migrate=False)
    finally:
        await engine.dispose()


def _reportflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_commands_upgrade_and_report_current(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "ENVIRONMENT": "production",
        "SECRET_KEY": "a-test-secret-that-is-not-the-dev-default",
    }
    before = _reportflow("db", "current", env=env)
    assert before.returncode == 0, before.stderr
    assert "revision none" in before.stdout
    upgraded = _reportflow("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    after = _reportflow("db", "current", env=env)
    assert f"revision {migrations.head()} " in after.stdout


async def test_production_api_process_refuses_an_unmigrated_database(
    tmp_path: Path, temporal_env: WorkflowEnvironment, smtp: SmtpServer
) -> None:
    """`reportflow api` with ENVIRONMENT=production on an empty database: it exits,
    says to run `reportflow db upgrade`, and has created no table."""
    settings = make_settings(
        tmp_path,
        smtp.port,
        environment="production",
        secret_key="a-production-secret-for-this-test-only",
    )
    address = temporal_env.client.service_client.config.target_host
    api = ApiProcess.start(settings, address, tmp_path / "api.log")
    try:
        with pytest.raises(RuntimeError, match="reportflow db upgrade"):
            await api.wait_ready()
    finally:
        api.stop()
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
    finally:
        await engine.dispose()
