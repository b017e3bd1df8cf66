"""`reportflow db upgrade|current` (Alembic migrations) and `reportflow seed` (demo data)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from reportflow.core.config import get_settings

app = typer.Typer()
db = typer.Typer(no_args_is_help=True)
app.add_typer(
    db,
    name="db",
    short_help="database migrations (Alembic): upgrade, current",
    help="Runs on DATABASE_URL. Production processes never create tables: "
    "run `reportflow db upgrade` (the compose `migrate` job) before each deploy.",
)


def _migrate(revision: str | None) -> None:
    """Upgrade to `revision` (None: only look), then say where the database is."""
    from reportflow import migrations
    from reportflow.core.db import create_engine

    async def go() -> str:
        engine = create_engine(get_settings().database_url)
        try:
            if revision is not None:
                await migrations.upgrade(engine, revision)
            return await migrations.current(engine) or "none (an empty database)"
        finally:
            await engine.dispose()

    current = asyncio.run(go())
    sys.stdout.write(f"database at revision {current} (newest: {migrations.head()})\n")


@db.command("upgrade", help="migrate to the newest revision")
def upgrade(
    revision: Annotated[str, typer.Argument(help="target")] = "head",
) -> None:
    _migrate(revision)


@db.command("current", help="print the database's revision")
def current() -> None:
    _migrate(None)


@app.command("seed", help="fill the database with demo users and transactions")
def seed(
    users: Annotated[int, typer.Option(help="how many users")] = 5,
    days: Annotated[int, typer.Option(help="days of history")] = 120,
) -> None:
    from reportflow.core.db import create_engine, ensure_schema
    from reportflow.seed import seed as fill

    async def go() -> None:
        settings = get_settings()
        engine = create_engine(settings.database_url)
        await ensure_schema(engine, migrate=settings.is_dev)
        summary = await fill(engine, users=users, days=days)
        await engine.dispose()
        sys.stdout.write(
            f"created {summary.users_created} users and "
            f"{summary.transactions_created} transactions\n"
        )

    asyncio.run(go())
