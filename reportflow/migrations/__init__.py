"""Alembic migrations of the application database, driven from Python.

`reportflow db upgrade` (the compose `migrate` job) and `reportflow dev` call
`upgrade`; production API and worker processes only `check` that the schema is
at the head revision and never create tables themselves. Concurrent upgrades
(an API and its workers starting together in dev) take a lock first: an
advisory lock on PostgreSQL, a lock file beside a SQLite database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# Any constant shared by every reportflow process: pg_advisory_xact_lock's key.
_PG_LOCK_KEY = 0x7265706F7274  # "report"
# The schema that `metadata.create_all` made before migrations existed.
_BEFORE_MIGRATIONS = "0001"


class SchemaNotReady(RuntimeError):
    """The database is not at the revision this code needs."""


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "reportflow/migrations/versions holds no revision"
    return revision


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(f"{database}.migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:  # noqa: ASYNC230 - opening a lock file is instant
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(connection: Connection, action: str, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held to the end of the transaction: a second upgrader waits, then finds
        # the tables made and has nothing to do. PostgreSQL's DDL is transactional.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    config = alembic_config(connection)
    if action == "upgrade":
        if _current(connection) is None and inspect(connection).has_table("users"):
            # A database made by the old create-tables-at-boot: it is revision 0001.
            log.info("database has tables but no revision: marking it %s", _BEFORE_MIGRATIONS)
            command.stamp(config, _BEFORE_MIGRATIONS)
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
    connection.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision` (default: the newest)."""
    async with _sqlite_file_lock(engine), engine.connect() as conn:
        await conn.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the database back to `revision` ("base" drops every table)."""
    async with _sqlite_file_lock(engine), engine.connect() as conn:
        await conn.run_sync(_run, "downgrade", revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision; None when no migration ever ran on it."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def check(engine: AsyncEngine) -> str:
    """The database's revision, or SchemaNotReady saying what to run."""
    revision = await current(engine)
    newest = head()
    if revision is None:
        raise SchemaNotReady(
            f"the database at {engine.url.render_as_string(hide_password=True)} has no "
            "reportflow schema; run `reportflow db upgrade` (the compose `migrate` job) first"
        )
    if revision != newest:
        # An older schema under newer code, or the reverse during a rolling deploy:
        # migrations are written to be compatible one revision either way.
        log.warning(
            "database schema at revision %s, this code expects %s; run `reportflow db upgrade`",
            revision,
            newest,
        )
    return revision
