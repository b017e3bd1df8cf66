"""FastAPI dependencies: settings, the one Temporal client, the engine, the caller."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.api.token_cache import TokenCache
from reportflow.core.config import Settings
from reportflow.core.store import ReportStore
from reportflow.core.tokens import Caller

# What an admin token is told to use instead, per thing a user owns.
_OWN_INSTEAD = {
    "reports": "use a user's token (`reportflow token create --user ID`)",
    "schedules": "use a user's token, or `reportflow schedule` as an operator",
    "webhooks": "use a user's token",
}


def user_of(caller: Caller, things: Literal["reports", "schedules", "webhooks"]) -> str:
    """The caller's own user ID; an admin token owns no `things` (403 says what to use)."""
    if caller.user_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"an admin token has no {things} of its own; {_OWN_INSTEAD[things]}",
        )
    return caller.user_id


bearer = HTTPBearer(auto_error=False, description="A token from `reportflow token create`")

# The accessors are `async def` though they never await: FastAPI runs a plain
# `def` dependency in a thread pool, a thread hop per dependency per request.


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _store(request: Request) -> ReportStore:
    store: ReportStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(_settings)]
TemporalDep = Annotated[Client, Depends(_temporal)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
StoreDep = Annotated[ReportStore, Depends(_store)]


async def authenticate(
    engine: AsyncEngine,
    credentials: HTTPAuthorizationCredentials | None,
    cache: TokenCache | None = None,
) -> Caller:
    """The caller of a live token, else 401 (unknown, expired or revoked: the
    database says so on every replica, at once)."""
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing, unknown, expired or revoked bearer token; send "
        "`Authorization: Bearer <token>` "
        "with a token from `reportflow token create --user ID`",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or not credentials.credentials or len(credentials.credentials) > 200:
        raise unauthorized
    cache = cache or TokenCache(0)
    caller = await cache.lookup(engine, credentials.credentials)
    if caller is None:
        raise unauthorized
    return caller


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    # The engine from app.state, not EngineDep: one dependency fewer to solve on
    # every authenticated request.
    return await authenticate(request.app.state.engine, credentials, request.app.state.token_cache)


async def _admin(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
    if not caller.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this needs an admin token (`reportflow token create --admin`)",
        )
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]
AdminDep = Annotated[Caller, Depends(_admin)]
