"""A fresh PostgreSQL database per test, on the server TEST_DATABASE_URL names."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import make_url, text

from reportflow.core.db import create_engine


def server_url() -> str:
    """TEST_DATABASE_URL, or skip: these tests need a PostgreSQL server."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs PostgreSQL: set TEST_DATABASE_URL (CI sets it)")
    return url


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def scratch_database(prefix: str = "rf") -> AsyncIterator[str]:
    """CREATE DATABASE with a unique name; yields its URL; DROP it afterwards."""
    admin = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(admin, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
