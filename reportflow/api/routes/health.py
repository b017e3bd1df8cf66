"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.service import RPCError, RPCStatusCode

from reportflow.api.deps import EngineDep, TemporalDep
from reportflow.temporal import USER_ID_KEY

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(response: Response, client: TemporalDep, engine: EngineDep) -> Health:
    """Ready when Temporal and the database both answer."""
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
    return Health(status="ready" if ready else "not ready", checks=checks)
