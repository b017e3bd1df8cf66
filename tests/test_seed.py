"""The demo seed: deterministic, idempotent, realistic, and hostile where it should be.

Seeding writes the fixed ids u0001, u0002, ..., so every test seeds a fresh,
private database: a new SQLite file, and with TEST_DATABASE_URL also a
throwaway PostgreSQL database (created and dropped here), never the shared one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from reportflow.core.db import create_engine, create_schema, transactions, users
from reportflow.report.query import aggregate
from reportflow.seed import HOSTILE_MERCHANTS, ensure_seeded, seed
from tests.utils.data import expected_totals

TODAY = date(2025, 3, 31)

EngineFactory = Callable[[], Awaitable[AsyncEngine]]


def _kinds() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


@pytest.fixture(params=_kinds())
async def fresh_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """A factory of empty databases with the schema, all removed afterwards."""
    kind: str = request.param
    engines: list[AsyncEngine] = []
    databases: list[str] = []
    admin_url = make_url(os.environ.get("TEST_DATABASE_URL", "sqlite://"))

    async def make() -> AsyncEngine:
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        else:
            name = f"rf_seed_{uuid.uuid4().hex[:12]}"
            admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
            async with admin.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            await admin.dispose()
            databases.append(name)
            url = admin_url.set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        await create_schema(engine)
        engines.append(engine)
        return engine

    yield make

    for engine in engines:
        await engine.dispose()
    if databases:
        admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            for name in databases:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await admin.dispose()


async def _snapshot(engine: AsyncEngine) -> tuple[list[Any], list[Any]]:
    t = transactions.c
    async with engine.connect() as conn:
        user_rows = (
            await conn.execute(select(users.c.id, users.c.name, users.c.email).order_by(users.c.id))
        ).all()
        txn_rows = (
            await conn.execute(
                select(t.user_id, t.posted_at, t.amount_cents, t.currency, t.merchant, t.category)
            )
        ).all()
    return [tuple(r) for r in user_rows], sorted(tuple(r) for r in txn_rows)


async def test_seed_is_deterministic(fresh_engine: EngineFactory) -> None:
    first, second = await fresh_engine(), await fresh_engine()

    a = await seed(first, users=4, days=45, today=TODAY, rng_seed=3)
    b = await seed(second, users=4, days=45, today=TODAY, rng_seed=3)

    assert a == b
    assert a.users_created == 4
    assert a.transactions_created > 4 * 45
    assert await _snapshot(first) == await _snapshot(second)


async def test_other_rng_seed_gives_other_data(fresh_engine: EngineFactory) -> None:
    first, second = await fresh_engine(), await fresh_engine()

    await seed(first, users=2, days=30, today=TODAY, rng_seed=1)
    await seed(second, users=2, days=30, today=TODAY, rng_seed=2)

    assert (await _snapshot(first))[1] != (await _snapshot(second))[1]


async def test_seed_is_idempotent_per_user(fresh_engine: EngineFactory) -> None:
    engine, reference = await fresh_engine(), await fresh_engine()

    await seed(engine, users=3, days=40, today=TODAY)
    before = await _snapshot(engine)
    again = await seed(engine, users=3, days=40, today=TODAY)
    assert (again.users_created, again.transactions_created) == (0, 0)
    assert await _snapshot(engine) == before

    # Asking for more users adds only the missing ones, identical to a fresh seed.
    more = await seed(engine, users=5, days=40, today=TODAY)
    assert more.users_created == 2
    await seed(reference, users=5, days=40, today=TODAY)
    assert await _snapshot(engine) == await _snapshot(reference)


async def test_seeded_data_is_realistic(fresh_engine: EngineFactory) -> None:
    engine = await fresh_engine()
    summary = await seed(engine, users=5, days=120, today=TODAY)
    user_rows, txn_rows = await _snapshot(engine)

    assert [r[0] for r in user_rows] == ["u0001", "u0002", "u0003", "u0004", "u0005"]
    assert len(txn_rows) == summary.transactions_created
    emails = [r[2] for r in user_rows]
    assert all(e and e.endswith("@example.com") and e.count("@") == 1 for e in emails)
    assert len(set(emails)) == len(emails)
    assert all(r[1].strip() for r in user_rows)

    merchants = {r[4] for r in txn_rows}
    assert set(HOSTILE_MERCHANTS) <= merchants
    assert any("<" in m and ">" in m for m in merchants)
    assert any("&" in m for m in merchants)
    assert any('"' in m and "'" in m for m in merchants)

    first_moment = datetime(2025, 3, 31) - timedelta(days=119)
    assert all(first_moment <= r[1] < datetime(2025, 4, 1) for r in txn_rows)
    assert {r[3] for r in txn_rows} == {"EUR"}
    categories = {r[5] for r in txn_rows}
    assert {"income", "rent", "groceries", "restaurants", "transport"} <= categories
    assert {"subscriptions", "utilities", "shopping", "refunds"} <= categories
    for _, _, amount, _, _, category in txn_rows:
        assert isinstance(amount, int)
        assert (amount > 0) == (category in {"income", "refunds"}), (amount, category)
    for user_id, *_ in user_rows:
        per_user = [r for r in txn_rows if r[0] == user_id]
        salaries = [r for r in per_user if r[5] == "income"]
        assert 3 <= len(salaries) <= 5
        groceries = [r for r in per_user if r[5] == "groceries"]
        assert len(groceries) >= 120 // 7 * 2


async def test_seeded_report_matches_the_oracle(fresh_engine: EngineFactory) -> None:
    engine = await fresh_engine()
    await seed(engine, users=2, days=90, today=TODAY)
    start, end = date(2025, 1, 15), date(2025, 3, 15)

    report = await aggregate(engine, report_id="r", user_id="u0002", start=start, end=end)

    assert (report.net_cents, report.transaction_count) == await expected_totals(
        engine, "u0002", start, end
    )
    assert report.transaction_count > 0
    assert report.money_in_cents > 0 and report.money_out_cents > 0


async def test_ensure_seeded_only_seeds_an_empty_database(fresh_engine: EngineFactory) -> None:
    engine = await fresh_engine()

    assert await ensure_seeded(engine, users=2, days=10) is True
    assert await ensure_seeded(engine, users=2, days=10) is False
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(users))).scalar_one()
    assert count == 2
