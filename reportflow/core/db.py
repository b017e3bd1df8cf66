"""Tables, the async engine, and bringing the schema up (Alembic migrations).

`users` and `transactions` are the reporting source; `api_tokens` holds hashed
bearer tokens; `deliveries` is the email ledger that makes sending idempotent; `rate_limits`
holds the per-user start limit shared by every API replica; `webhooks` holds users'
endpoints for report events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("name", String(200), nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False),
    Column("posted_at", DateTime(timezone=False), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("merchant", Text, nullable=False),
    Column("category", String(64), nullable=False),
    # The report query is a range scan of one user's rows.
    Index("ix_transactions_user_posted", "user_id", "posted_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # NULL (a token minted before expiry existed): created_at + its kind's default lifetime.
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # Written at most once a minute per token (see tokens.lookup).
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    # The email ledger, one row per (report, workflow run). A row is written as a
    # *claim* before the SMTP transaction and marked `sent` after the server's
    # 250. A retried email step that finds `sent` returns the recorded result; one
    # that finds a live claim waits (another attempt may be sending right now);
    # one that finds an expired claim takes it over and sends. A regenerated
    # report (a new run) sends once more.
    Column("delivery_key", String(300), primary_key=True),
    Column("report_id", String(200), nullable=False, index=True),
    Column("message_id", String(300), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("status", String(16), nullable=False),  # claimed | sent
    Column("claim_id", String(64), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
)

webhooks = Table(
    "webhooks",
    metadata,
    # A user's endpoints for report events. The secret signs each delivery, so it
    # is kept (not hashed); it is shown to the user only when the endpoint is made.
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("secret", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Set when the receiver answered 410 Gone: nothing more is sent there.
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)

report_slots = Table(
    "report_slots",
    metadata,
    # MAX_RUNNING_REPORTS_PER_USER: a run holds a row from before its first step
    # until it ends. A run that ended without giving it back (terminated) is
    # found by asking Temporal once its slot is old, and its row removed.
    Column("run_key", String(300), primary_key=True),  # report_id/run_id
    Column("user_id", String(64), nullable=False, index=True),
    Column("report_id", String(200), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)


rate_limits = Table(
    "rate_limits",
    metadata,
    # One row per limited key (a user): the GCRA "theoretical arrival time",
    # seconds since the epoch (see reportflow.api.ratelimit).
    Column("key", String(200), primary_key=True),
    Column("tat", Double, nullable=False),
)


# SQLite's busy timeout: a writer waits this long for another's lock.
_SQLITE_CONNECT = {"timeout": 30}
# asyncpg: a statement (the pool's pre-ping too) never waits more than 30 s, like
# SQLite's busy timeout above; a new connection gives up after 10 s, not asyncpg's
# 60 s: a connection a partition holds (a SYN nobody answers) would otherwise keep
# an attempt waiting as long as a whole query attempt lasts.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10.0
_POSTGRES_CONNECT = {"command_timeout": 30, "timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}


def create_engine(url: str, *, pool_size: int = 5, max_overflow: int = 3) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or PostgreSQL (asyncpg) URLs.

    Plain `postgresql://` and `sqlite://` URLs are upgraded to their async drivers.
    Each process holds at most `pool_size + max_overflow` PostgreSQL connections
    (DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW).
    """
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args=_SQLITE_CONNECT)
        event.listen(engine.sync_engine, "connect", _sqlite_wal)
        return engine
    return create_async_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=_POSTGRES_CONNECT,
    )


def sqlite_twin(engine: AsyncEngine, *, read_only: bool = False) -> Engine | None:
    """A synchronous engine (the stdlib driver) on the same SQLite file as `engine`,
    for work that is cheaper done whole on one thread than statement by statement
    through aiosqlite's; None for PostgreSQL or an in-memory database. `read_only`:
    its connections refuse writes, as `sqlite_query_only` makes them."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in {None, "", ":memory:"}:
        return None
    twin = sa_create_engine(url.set(drivername="sqlite"), connect_args=_SQLITE_CONNECT)
    event.listen(twin, "connect", _sqlite_wal)
    if read_only:
        event.listen(twin, "connect", sqlite_query_only)
    return twin


def sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    """A SQLite connection that refuses writes (a PRAGMA is not transactional, so it
    holds for the connection's life)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers (token lookups, the report query) never queue behind a writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


async def create_schema(engine: AsyncEngine) -> None:
    """Migrate the database to the newest revision (dev, tests, `reportflow db upgrade`)."""
    from reportflow import migrations

    await migrations.upgrade(engine)


async def ensure_schema(engine: AsyncEngine, *, migrate: bool) -> None:
    """At boot: dev and test (`migrate`) upgrade their own database; production only
    checks that `reportflow db upgrade` ran (SchemaNotReady says so), creating nothing."""
    from reportflow import migrations

    if migrate:
        await migrations.upgrade(engine)
    else:
        await migrations.check(engine)
