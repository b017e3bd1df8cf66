"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from reportflow.api.deps import EngineDep, TemporalDep, authenticate
from reportflow.core.temporal import USER_ID_KEY

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# How old a /readyz answer may be.
READY_FOR_SECONDS = 1.5


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


class Readiness:
    """The last readiness result, kept `seconds`: a load balancer's probes, every
    replica's, and a burst of curls cost Temporal and the database one check each
    time it is due, not one per probe; concurrent probes share the check in flight."""

    def __init__(self, seconds: float = READY_FOR_SECONDS) -> None:
        self.seconds = seconds
        self._at = -math.inf
        self._checks: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def checks(self, client: Client, engine: AsyncEngine) -> dict[str, str]:
        if time.monotonic() - self._at < self.seconds:
            return self._checks
        async with self._lock:
            if time.monotonic() - self._at >= self.seconds:
                self._checks = await _check(client, engine)
                self._at = time.monotonic()
                if not _ready(self._checks):
                    log.warning("not ready: %s", self._checks)
        return self._checks


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(
    request: Request,
    response: Response,
    client: TemporalDep,
    engine: EngineDep,
    # Read by hand, not declared: /readyz needs no token, one only adds details.
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Health:
    """Ready when Temporal and the database both answer (checked at most every
    READY_FOR_SECONDS). Each check's result (with its error) goes to the logs,
    and to admin callers; others get the status."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.checks(client, engine)
    ready = _ready(checks)
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    if not await _is_admin(request, authorization):
        checks = {}
    return Health(status="ready" if ready else "not ready", checks=checks)


def _ready(checks: dict[str, str]) -> bool:
    return all(v == "ok" for v in checks.values())


async def _check(client: Client, engine: AsyncEngine) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
        # A call into the namespace that uses the search attribute: fails on a bad
        # API key, a wrong namespace or an unregistered ReportUserId.
        await asyncio.wait_for(client.count_workflows(f"{USER_ID_KEY.name} = '-'"), timeout=3)
        checks["temporal"] = "ok"
    except RPCError as err:
        word = "unavailable" if err.status == RPCStatusCode.UNAVAILABLE else "error"
        checks["temporal"] = f"{word}: {err.status.name}: {err.message}"
    except Exception as err:
        checks["temporal"] = f"unavailable: {err or type(err).__name__}"
    try:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = f"unavailable: {err or type(err).__name__}"
    return checks


async def _is_admin(request: Request, authorization: str | None) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
    try:
        state = request.app.state
        return (await authenticate(state.engine, credentials, state.token_cache)).is_admin
    except HTTPException:
        return False
    except Exception:  # the database is down: nobody can be told it is an admin
        return False
