"""Tables, the async engine, and schema creation.

`users` and `transactions` are the reporting source; `api_tokens` holds hashed
bearer tokens; `deliveries` is the email ledger that makes sending idempotent.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.engine import make_url
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
    # One row per (report, workflow run): a retried email activity finds it and
    # does not send again; a regenerated report (a new run) sends once more.
    Column("delivery_key", String(300), primary_key=True),
    Column("report_id", String(200), nullable=False, index=True),
    Column("message_id", String(300), nullable=False),
    Column("recipients", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or PostgreSQL (asyncpg) URLs.

    Plain `postgresql://` and `sqlite://` URLs are upgraded to their async drivers.
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
        return create_async_engine(parsed, connect_args={"timeout": 30})
    return create_async_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
