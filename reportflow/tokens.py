"""Bearer tokens: minted once, shown once, stored as SHA-256 hashes.

Tokens carry 256 random bits, so a plain SHA-256 is enough (no password
stretching needed): the database never holds a usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.db import api_tokens, users

USER_ID = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


@dataclass(frozen=True)
class Caller:
    user_id: str | None
    is_admin: bool


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    engine: AsyncEngine, *, user_id: str | None = None, admin: bool = False, label: str = ""
) -> str:
    if admin == (user_id is not None):
        raise ValueError("a token belongs to a user (--user ID) or is an admin token (--admin)")
    if user_id is not None:
        if not USER_ID.match(user_id):
            raise ValueError(f"invalid user id {user_id!r}: letters, digits, '_' and '.' only")
        async with engine.connect() as conn:
            exists = (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first()
        if exists is None:
            raise ValueError(f"user {user_id} does not exist; run `reportflow seed` or add it")
    token = "rf_" + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(
            insert(api_tokens).values(
                token_hash=hash_token(token), user_id=user_id, is_admin=admin, label=label
            )
        )
    return token


async def lookup(engine: AsyncEngine, token: str) -> Caller | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(api_tokens.c.user_id, api_tokens.c.is_admin).where(
                    api_tokens.c.token_hash == hash_token(token)
                )
            )
        ).first()
    if row is None:
        return None
    return Caller(user_id=row.user_id, is_admin=bool(row.is_admin))
