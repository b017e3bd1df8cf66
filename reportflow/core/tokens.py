"""Bearer tokens: minted once, shown once, stored as SHA-256 hashes; they expire
and can be revoked.

Tokens carry 256 random bits, so a plain SHA-256 is enough (no password
stretching needed): the database never holds a usable token. A token's ID is
`tok_` and the first 12 hex digits of that hash: it names the token in lists,
logs and `reportflow token revoke` without revealing it.

Each API process keeps a token's row for TOKEN_CACHE_SECONDS (2 s by default,
never past its expiry), so a revocation holds on every API replica within that
time (at once with 0); the row's `last_used_at` is written at most once a minute.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reportflow.core.db import api_tokens, users

USER_ID = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
TOKEN_ID = re.compile(r"^tok_[0-9a-f]{12}$")
ID_HEX_DIGITS = 12
USER_TOKEN_DAYS = 90
ADMIN_TOKEN_DAYS = 7
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    user_id: str | None
    is_admin: bool
    token_id: str = ""
    expires_at: datetime | None = None

    @property
    def name(self) -> str:
        """Who, for audit lines: the token ID and whose it is."""
        return f"{self.token_id} ({'admin' if self.is_admin else f'user {self.user_id}'})"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_id: str | None
    is_admin: bool
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


class TokenError(ValueError):
    """A token that cannot be created or found, with what to do about it."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token_hash: str) -> str:
    return f"tok_{token_hash[:ID_HEX_DIGITS]}"


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _expiry(expires_at: datetime | None, created_at: datetime, is_admin: bool) -> datetime:
    if expires_at is not None:
        return _utc(expires_at)
    days = ADMIN_TOKEN_DAYS if is_admin else USER_TOKEN_DAYS
    return _utc(created_at) + timedelta(days=days)


async def create_token(
    engine: AsyncEngine,
    *,
    user_id: str | None = None,
    admin: bool = False,
    label: str = "",
    lifetime: timedelta | None = None,
) -> str:
    """A new token (shown once); it expires after `lifetime` (default 90 days for a
    user token, 7 for an admin token)."""
    if admin == (user_id is not None):
        raise TokenError("a token belongs to a user (--user ID) or is an admin token (--admin)")
    if lifetime is not None and lifetime <= timedelta(0):
        raise TokenError("a token's lifetime must be positive (--days N with N >= 1)")
    if user_id is not None:
        if not USER_ID.match(user_id):
            raise TokenError(f"invalid user id {user_id!r}: letters, digits, '_' and '.' only")
        async with engine.connect() as conn:
            exists = (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first()
        if exists is None:
            raise TokenError(f"user {user_id} does not exist; run `reportflow seed` or add it")
    if lifetime is None:
        lifetime = timedelta(days=ADMIN_TOKEN_DAYS if admin else USER_TOKEN_DAYS)
    token = "rf_" + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(api_tokens).values(
                token_hash=hash_token(token),
                user_id=user_id,
                is_admin=admin,
                label=label,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return token


# Built once: every request runs it, and building a statement (and its cache
# key) costs more CPU than SQLite takes to answer it.
_LOOKUP = select(
    api_tokens.c.user_id,
    api_tokens.c.is_admin,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.revoked_at,
    api_tokens.c.last_used_at,
).where(api_tokens.c.token_hash == bindparam("digest"))


async def lookup(engine: AsyncEngine, token: str) -> Caller | None:
    """The caller of a live token; None for an unknown, revoked or expired one."""
    digest = hash_token(token)
    async with engine.connect() as conn:
        row = (await conn.execute(_LOOKUP, {"digest": digest})).first()
    if row is None or row.revoked_at is not None:
        return None
    now = datetime.now(UTC)
    expires_at = _expiry(row.expires_at, row.created_at, bool(row.is_admin))
    if expires_at <= now:
        return None
    if row.last_used_at is None or _utc(row.last_used_at) <= now - LAST_USED_EVERY:
        await _touch(engine, digest, now)
    return Caller(
        user_id=row.user_id,
        is_admin=bool(row.is_admin),
        token_id=token_id(digest),
        expires_at=expires_at,
    )


async def _touch(engine: AsyncEngine, digest: str, now: datetime) -> None:
    # Conditional, so replicas racing on the same token write once a minute at most.
    async with engine.begin() as conn:
        await conn.execute(
            update(api_tokens)
            .where(
                and_(
                    api_tokens.c.token_hash == digest,
                    or_(
                        api_tokens.c.last_used_at.is_(None),
                        api_tokens.c.last_used_at <= now - LAST_USED_EVERY,
                    ),
                )
            )
            .values(last_used_at=now)
        )


async def list_tokens(engine: AsyncEngine) -> list[TokenInfo]:
    """Every token, newest first (the hashes stay in the database)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at.desc()))
        ).all()
    return [
        TokenInfo(
            id=token_id(row.token_hash),
            user_id=row.user_id,
            is_admin=bool(row.is_admin),
            label=row.label or "",
            created_at=_utc(row.created_at),
            expires_at=_expiry(row.expires_at, row.created_at, bool(row.is_admin)),
            revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
            last_used_at=_utc(row.last_used_at) if row.last_used_at else None,
        )
        for row in rows
    ]


# PostgreSQL: every API process LISTENs here and forgets the token named in the
# payload (reportflow.api.token_cache); SQLite's caches see the commit instead.
CHANNEL = "reportflow_tokens"


async def _announce(conn: AsyncConnection, digest: str) -> None:
    """Tell every API process's token cache, when the transaction commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :digest)"), {"channel": CHANNEL, "digest": digest}
        )


async def revoke_token(engine: AsyncEngine, id_or_token: str) -> str:
    """Revoke a token named by its ID (`tok_…`) or given whole; returns its ID."""
    if TOKEN_ID.match(id_or_token):
        prefix = id_or_token.removeprefix("tok_")
        condition = api_tokens.c.token_hash.startswith(prefix, autoescape=True)
    else:
        condition = api_tokens.c.token_hash == hash_token(id_or_token)
    async with engine.begin() as conn:
        hashes = [
            row.token_hash
            for row in (await conn.execute(select(api_tokens.c.token_hash).where(condition)))
        ]
        if not hashes:
            raise TokenError(
                f"no token {id_or_token[:16]!r}: pass an ID from `reportflow token list` "
                "or the token itself"
            )
        if len(hashes) > 1:
            raise TokenError(
                f"{id_or_token} names {len(hashes)} tokens; revoke by the token itself"
            )
        await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.token_hash == hashes[0], api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        await _announce(conn, hashes[0])
    return token_id(hashes[0])
