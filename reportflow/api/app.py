"""The FastAPI application: thin, never doing the slow work, never waiting on it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError, RPCStatusCode

from reportflow.api.events import StreamCounter
from reportflow.api.ratelimit import RateLimiter
from reportflow.api.routes import (
    admin,
    health,
    kinds,
    metrics,
    outbox,
    pages,
    reports,
    schedules,
    webhooks,
)
from reportflow.api.routes import codec as codec_routes
from reportflow.api.security import SecurityHeaders
from reportflow.api.status_reads import StatusReads
from reportflow.api.token_cache import TokenCache
from reportflow.api.watch import Watchers
from reportflow.core import tracing
from reportflow.core.codec import EncryptionCodec
from reportflow.core.config import Settings, get_settings
from reportflow.core.db import create_engine, ensure_schema
from reportflow.core.store import open_store
from reportflow.core.temporal import connect
from reportflow.kinds import load_kinds

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


class BodyLimit:
    """413 for a body over `max_bytes`, whether or not it declares its length.

    Bodies here are small JSON documents, so the body is read up front (at most
    `max_bytes`) and replayed to the app; paths under `own_body` read (and limit)
    their bodies themselves, after they have checked the caller.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, own_body: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_body = own_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in {"GET", "HEAD", "OPTIONS"}
            or scope["path"].startswith(self.own_body)
        ):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                too_large = JSONResponse(
                    {"detail": f"the request body is over {limit} bytes; send a smaller one"},
                    status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                )
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _readable(errors: list[dict[str, object]]) -> str:
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in {"body", "query", "path"}]  # type: ignore[attr-defined]
        msg = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"})
    return JSONResponse(
        {"detail": _readable(errors), "errors": errors},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _temporal_not_connected(request: Request, exc: Exception) -> Response:
    """The lazy client's first connect failed: the SDK raises a bare RuntimeError."""
    if str(exc).startswith("Failed client connect"):
        return await _temporal_unavailable(request, exc)
    raise exc


# Temporal cannot be reached or is overloaded: retrying later can help.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
}


async def _temporal_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After when Temporal is unreachable; any other Temporal error
    (a bad API key, a search attribute not registered, a wrong namespace) is a
    fault of this deployment that waiting will not fix: 500, cause in the log."""
    if isinstance(exc, RPCError) and exc.status not in _TRANSIENT:
        log.error("Temporal refused a call (%s): %s", exc.status.name, exc.message)
        return JSONResponse(
            {
                "detail": "the service is misconfigured and cannot reach its job service; "
                "operators: see the API log and /readyz"
            },
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    log.error("Temporal is unavailable: %s", exc)
    return JSONResponse(
        {"detail": "the job service (Temporal) is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler, except: a body that is not JSON says what to send,
    and a 405 lists every method the path allows (Starlette names only those
    of the first route that matched it)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and "parsing the body" in str(exc.detail):
        return JSONResponse(
            {"detail": 'the body is not valid JSON; send {"start": "YYYY-MM-DD", "end": ...}'},
            status_code=exc.status_code,
        )
    if exc.status_code != status.HTTP_405_METHOD_NOT_ALLOWED:
        return await http_exception_handler(request, exc)
    allowed = {
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        for route in request.app.router.routes
        if route.matches({**request.scope, "method": method})[0] == Match.FULL
    }
    return JSONResponse(
        {"detail": f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}"},
        status_code=exc.status_code,
        headers={"Allow": ", ".join(sorted(allowed))},
    )


def create_app(
    settings: Settings | None = None,
    *,
    dev_outbox: Path | None = None,
    demo_token: str | None = None,
    dev_codec_origin: str | None = None,
) -> FastAPI:
    """The app; `dev_outbox` (set by `reportflow dev`) serves the SMTP sink at /dev/outbox
    to loopback callers, `demo_token` (dev only) is filled in on the web page's sign-in
    form, and `dev_codec_origin` (dev on loopback only) lets the embedded Web UI use the
    codec without a token."""
    settings = settings or get_settings()
    # Here rather than in `reportflow api`, so any ASGI server (uvicorn, gunicorn,
    # hypercorn pointed at the factory) meets the same refusal.
    problem_with_secret = settings.secret_problem()
    if problem_with_secret:
        raise RuntimeError(f"reportflow API: refusing to start: {problem_with_secret}")
    codec = EncryptionCodec(settings.keyring())  # no keys, no app: nothing goes out in clear

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One client per process; lazy, so the API starts (and /readyz says
        # why it is not ready) even while Temporal is still coming up.
        app.state.temporal = await connect(settings, lazy=True)
        app.state.watchers = Watchers(app.state.temporal, settings)
        app.state.engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        await ensure_schema(app.state.engine, migrate=settings.is_dev)
        await app.state.token_cache.start(app.state.engine)  # revocations, at once
        app.state.rate_limiter = RateLimiter(app.state.engine, settings.rate_limit_per_minute)
        # Creating webhooks and schedules: the same limiter, on keys of their own.
        app.state.create_limiter = RateLimiter(app.state.engine, settings.create_rate_per_minute)
        yield
        await app.state.watchers.close()
        app.state.rate_limiter.close()
        app.state.create_limiter.close()
        await app.state.token_cache.close()
        await app.state.engine.dispose()

    app = FastAPI(
        title="reportflow",
        version="0.1.0",
        summary="Transaction reports generated in the background: 202 now, PDF by email soon.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Loaded once, here: a kind that is wrong stops the API at start, naming its module.
    app.state.kinds = load_kinds(settings.report_kinds)
    app.state.store = open_store(
        settings.report_store_url, public_endpoint=settings.report_store_public_endpoint
    )
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    app.state.readiness = health.Readiness()
    app.state.metrics_cache = metrics.MetricsCache(settings.metrics_cache_seconds)
    app.state.dev_outbox = dev_outbox
    app.state.demo_token = demo_token
    app.state.dev_codec_origin = dev_codec_origin
    app.state.codec = codec
    app.state.event_streams = StreamCounter(
        settings.events_max_streams_per_token, settings.events_max_stream_seconds
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RPCError, _temporal_unavailable)
    app.add_exception_handler(RuntimeError, _temporal_not_connected)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(StatusReads)  # innermost: security headers still go on its answers
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        own_body=("/codec/",),  # the token first: an outsider's body is never read
    )
    app.add_middleware(SecurityHeaders)
    app.include_router(reports.router)
    app.include_router(kinds.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.include_router(codec_routes.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if dev_outbox is not None:
        app.include_router(outbox.router)
    tracing.instrument_app(app)
    return app
