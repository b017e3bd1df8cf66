"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.service import RPCError, RPCStatusCode

from reportflow.api.deps import EngineDep, TemporalDep, authenticate
from reportflow.core.temporal import USER_ID_KEY

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(
    response: Response,
    client: TemporalDep,
    engine: EngineDep,
    # Read by hand, not declared: /readyz needs no token, one only adds details.
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Health:
    """Ready when Temporal and the database both answer. Each check's result
    (with its error) goes to the logs, and to admin callers; others get the status."""
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
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        log.warning("not ready: %s", checks)
    if not await _is_admin(engine, authorization):
        checks = {}
    return Health(status="ready" if ready else "not ready", checks=checks)


async def _is_admin(engine: EngineDep, authorization: str | None) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
    try:
        return (await authenticate(engine, credentials)).is_admin
    except HTTPException:
        return False
    except Exception:  # the database is down: nobody can be told it is an admin
        return False
