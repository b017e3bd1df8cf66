"""Deterministic, realistic demo data for the `users` and `transactions` tables.

Every user gets their own random stream derived from `random.Random(rng_seed)`,
so the same arguments always produce the same rows, and seeding N users yields
the same first users as seeding more. Users whose id already exists are skipped
(with their transactions), so running the seed again is harmless. Each batch of
users is written together with their transactions in one database transaction:
a user is either fully there or not at all.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reportflow.core.db import transactions
from reportflow.core.db import users as users_table

DEFAULT_USERS = 5
DEFAULT_DAYS = 120
BATCH_ROWS = 5_000
CURRENCY = "EUR"

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Elif",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kenji",
    "Lena",
    "Mateo",
    "Nora",
    "Olga",
    "Paul",
    "Renée",
    "Sofia",
    "Tariq",
    "Zoë",
)
LAST_NAMES = (
    "Müller",
    "Schmidt",
    "García",
    "Rossi",
    "Dubois",
    "Novak",
    "Kaya",
    "Tanaka",
    "O'Brien",
    "Jensen",
    "Kowalski",
    "Haddad",
    "Silva",
    "Weber",
    "Nguyen",
    "Fischer",
)

EMPLOYERS = ("Acme GmbH Payroll", "Globex SE Salary", "Initech AG Gehalt", "Umbrella BV Payroll")
LANDLORDS = ("Hausverwaltung Berger", "Wohnbau Nord eG", "City Flats Ltd")
GROCERIES = ("REWE", "Lidl", "Aldi Süd", "Edeka", "Москва Маркет", "Bio Company")
RESTAURANTS = (
    "東京ラーメン",
    "Café Zürich",
    "مقهى",
    "<script>alert(1)</script> Kebab",
    'Joe\'s "Famous" Diner',
    'Bob\'s <Bistro> & "Bar"',
    "Trattoria Da Mario",
    "Curry 36",
    "Burgermeister",
)
TRANSPORT = ("BVG", "Deutsche Bahn", "Uber", "Shell", "Lime", "FlixBus")
SHOPPING = ("Amazon", "IKEA", "Zalando", "Marks & Spencer", "MediaMarkt", "dm-drogerie markt")
SUBSCRIPTIONS = (
    ("Netflix", -13_99),
    ("Spotify", -10_99),
    ("FitX Gym", -24_90),
    ("iCloud", -2_99),
    ("The Guardian", -7_99),
)
UTILITIES = (("Vattenfall Strom", -55_00, -110_00), ("Telekom Internet", -39_95, -39_95))
PHONE = ("Vodafone Mobile", -19_99)

# The names a renderer must escape or shape correctly; all appear in the seed.
HOSTILE_MERCHANTS = (
    "<script>alert(1)</script> Kebab",
    "Marks & Spencer",
    'Joe\'s "Famous" Diner',
    'Bob\'s <Bistro> & "Bar"',
    "東京ラーメン",
    "Café Zürich",
    "Москва Маркет",
    "مقهى",
)


@dataclass(frozen=True)
class SeedSummary:
    users_created: int
    transactions_created: int


@dataclass(frozen=True)
class _SeedUser:
    id: str
    name: str
    email: str
    seed: int


def user_id_for(n: int) -> str:
    """The id of the n-th seeded user (1-based): u0001, u0002, ..."""
    return f"u{n:04d}"


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _plan_users(count: int, rng_seed: int) -> list[_SeedUser]:
    """Ids, names, emails and per-user seeds; prefix-stable in `count`."""
    rng = random.Random(rng_seed)
    planned: list[_SeedUser] = []
    used_emails: set[str] = set()
    for n in range(1, count + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        local = f"{_ascii(first)}.{_ascii(last)}"
        email = f"{local}@example.com"
        if email in used_emails:
            email = f"{local}{n}@example.com"
        used_emails.add(email)
        planned.append(_SeedUser(user_id_for(n), f"{first} {last}", email, rng.getrandbits(64)))
    return planned


def _at(rng: random.Random, day: date, first_hour: int, last_hour: int) -> datetime:
    moment = time(rng.randint(first_hour, last_hour), rng.randint(0, 59), rng.randint(0, 59))
    return datetime.combine(day, moment)


def _cents(rng: random.Random, low_euros: float, high_euros: float) -> int:
    return rng.randint(round(low_euros * 100), round(high_euros * 100))


def _transactions_for(user: _SeedUser, days: int, today: date) -> list[dict[str, Any]]:
    """One user's transactions over the `days` days ending with `today`."""
    rng = random.Random(user.seed)
    salary = rng.randint(2_400, 6_500) * 100 + rng.choice((0, 50))
    employer = rng.choice(EMPLOYERS)
    pay_day = rng.choice((1, 15, 25, 28))
    rent = -rng.randint(650, 1_700) * 100
    landlord = rng.choice(LANDLORDS)
    rent_day = rng.randint(1, 3)
    subscriptions = [(m, c, rng.randint(1, 28)) for m, c in rng.sample(SUBSCRIPTIONS, 3)]
    utility_days = [rng.randint(1, 28) for _ in UTILITIES]
    phone_day = rng.randint(1, 28)
    grocery_p = rng.uniform(0.35, 0.7)
    restaurant_p = rng.uniform(0.12, 0.35)
    transport_p = rng.uniform(0.25, 0.6)
    shopping_p = rng.uniform(0.05, 0.14)
    refund_p = 0.015

    rows: list[dict[str, Any]] = []

    def add(at: datetime, cents: int, merchant: str, category: str) -> None:
        rows.append(
            {
                "user_id": user.id,
                "posted_at": at,
                "amount_cents": cents,
                "currency": CURRENCY,
                "merchant": merchant,
                "category": category,
            }
        )

    first_day = today - timedelta(days=days - 1)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if day.day == pay_day:
            add(_at(rng, day, 5, 8), salary + rng.choice((0, 0, 0, 150_00)), employer, "income")
        if day.day == rent_day:
            add(_at(rng, day, 6, 10), rent, landlord, "rent")
        for merchant, cents, sub_day in subscriptions:
            if day.day == sub_day:
                add(_at(rng, day, 0, 6), cents, merchant, "subscriptions")
        for (merchant, low, high), utility_day in zip(UTILITIES, utility_days, strict=True):
            if day.day == utility_day:
                add(_at(rng, day, 7, 12), rng.randint(high, low), merchant, "utilities")
        if day.day == phone_day:
            add(_at(rng, day, 7, 12), PHONE[1], PHONE[0], "utilities")
        if rng.random() < grocery_p:
            weekend = day.weekday() == 5
            amount = _cents(rng, 25, 140) if weekend else _cents(rng, 6, 65)
            add(_at(rng, day, 8, 21), -amount, rng.choice(GROCERIES), "groceries")
        if rng.random() < restaurant_p:
            add(_at(rng, day, 11, 22), -_cents(rng, 8, 75), rng.choice(RESTAURANTS), "restaurants")
        if rng.random() < transport_p:
            merchant = rng.choice(TRANSPORT)
            amount = _cents(rng, 15, 80) if merchant == "Deutsche Bahn" else _cents(rng, 2, 25)
            add(_at(rng, day, 6, 23), -amount, merchant, "transport")
        if rng.random() < shopping_p:
            add(_at(rng, day, 9, 22), -_cents(rng, 12, 260), rng.choice(SHOPPING), "shopping")
        if rng.random() < refund_p:
            add(_at(rng, day, 9, 18), _cents(rng, 10, 120), rng.choice(SHOPPING), "refunds")
    return rows


async def _existing_ids(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        result = await conn.execute(select(users_table.c.id).where(users_table.c.id.in_(chunk)))
        found.update(result.scalars().all())
    return found


async def _write(
    engine: AsyncEngine, batch_users: list[_SeedUser], batch_rows: list[dict[str, Any]]
) -> tuple[int, int]:
    """Insert a batch of users with their rows; (users, rows) actually written.

    If another seeder inserted some of these users meanwhile, the batch is
    rolled back and written again without them.
    """
    try:
        async with engine.begin() as conn:
            await _insert(conn, batch_users, batch_rows)
        return len(batch_users), len(batch_rows)
    except IntegrityError:
        async with engine.begin() as conn:
            taken = await _existing_ids(conn, [u.id for u in batch_users])
            kept_users = [u for u in batch_users if u.id not in taken]
            kept_rows = [r for r in batch_rows if r["user_id"] not in taken]
            await _insert(conn, kept_users, kept_rows)
        return len(kept_users), len(kept_rows)


async def _insert(
    conn: AsyncConnection, batch_users: list[_SeedUser], batch_rows: list[dict[str, Any]]
) -> None:
    if not batch_users:
        return
    await conn.execute(
        insert(users_table), [{"id": u.id, "name": u.name, "email": u.email} for u in batch_users]
    )
    for i in range(0, len(batch_rows), BATCH_ROWS):
        await conn.execute(insert(transactions), batch_rows[i : i + BATCH_ROWS])


async def seed(
    engine: AsyncEngine,
    *,
    users: int,
    days: int,
    today: date | None = None,
    rng_seed: int = 42,
) -> SeedSummary:
    """Create users u0001..u{users:04d} with `days` days of transactions up to `today`.

    Users that already exist are skipped, so a second run creates nothing.
    """
    if users < 0 or days < 0:
        raise ValueError("users and days must not be negative")
    end = today or date.today()
    planned = _plan_users(users, rng_seed)
    async with engine.connect() as conn:
        existing = await _existing_ids(conn, [u.id for u in planned])

    users_created = 0
    transactions_created = 0
    batch_users: list[_SeedUser] = []
    batch_rows: list[dict[str, Any]] = []
    for user in planned:
        if user.id in existing:
            continue
        batch_users.append(user)
        batch_rows.extend(_transactions_for(user, days, end))
        if len(batch_rows) >= BATCH_ROWS:
            written_users, written_rows = await _write(engine, batch_users, batch_rows)
            users_created += written_users
            transactions_created += written_rows
            batch_users, batch_rows = [], []
    if batch_users:
        written_users, written_rows = await _write(engine, batch_users, batch_rows)
        users_created += written_users
        transactions_created += written_rows
    return SeedSummary(users_created=users_created, transactions_created=transactions_created)


async def ensure_seeded(
    engine: AsyncEngine, *, users: int = DEFAULT_USERS, days: int = DEFAULT_DAYS
) -> bool:
    """Seed the demo data when the users table is empty; True if it seeded."""
    async with engine.connect() as conn:
        any_user = (await conn.execute(select(users_table.c.id).limit(1))).first()
    if any_user is not None:
        return False
    await seed(engine, users=users, days=days)
    return True
