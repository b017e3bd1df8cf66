"""The user's reports over HTTP: start, follow, download, cancel, list, on the report service."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio.client import Client

from reportflow.api.deps import CallerDep, SettingsDep, StoreDep, TemporalDep, user_of
from reportflow.api.downloads import DownloadLink, download_link, verify
from reportflow.api.events import StreamCounter
from reportflow.api.kind_input import invalid, registered
from reportflow.api.paging import decode_page_token, encode_page_token
from reportflow.api.schemas import COMMON_ERRORS, PdfLink, problem
from reportflow.api.status_reads import RUN_ID_PATTERN, progress_headers, status_answer
from reportflow.api.token_cache import TokenCache
from reportflow.api.watch import Snapshot, Watchers
from reportflow.contract import ReportList, ReportRequest, StatusDocument
from reportflow.core import tracing
from reportflow.core.config import Settings
from reportflow.core.store import FileStore, ReportStore
from reportflow.core.tokens import Caller
from reportflow.kinds import KindRegistry
from reportflow.models import CONTENT_TYPES, DEFAULT_KIND
from reportflow.service import reports

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/reports",
    tags=["reports"],
    responses={**COMMON_ERRORS, 403: problem("An admin token has no reports of its own")},
)

NOT_FOUND = "no such report: check the ID, or list your reports with GET /reports"


RunIdQuery = Annotated[
    str | None,
    Query(
        pattern=RUN_ID_PATTERN,
        description="The run to describe (`run_id` of the document `POST /reports` "
        "answered); without it, the report's latest run",
    ),
]


async def _watched(
    request: Request, report_id: str, caller: Caller, run_id: str | None = None
) -> Snapshot:
    """The report's (or its run's) document as this process's watcher holds it (no
    Temporal call when it is being watched already)."""
    watchers: Watchers = request.app.state.watchers
    snapshot = await watchers.read(report_id, caller, run_id)
    if snapshot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)
    return snapshot


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StatusDocument,
    responses={
        401: problem("No or unknown token"),
        413: problem("Body too large"),
        422: problem("Malformed, reversed, future or too long range"),
        429: problem("Too many reports started; wait `Retry-After` seconds"),
    },
)
async def create_report(
    request: Request,
    caller: CallerDep,
    client: TemporalDep,
    settings: SettingsDep,
    body: Annotated[
        AnyKindRequest | None,
        Body(
            description='`{"kind": NAME, ...its parameters}` (GET /kinds); with no kind, '
            "the transactions PDF of `start`..`end`. `regenerate` runs a completed one again.",
            openapi_examples=REQUEST_EXAMPLES,
        ),
    ] = None,
) -> Response:
    """Start a report (or find the one already running or done for these parameters).

    With no body, the transactions report of the last 90 days ending today (UTC).
    """
    values = body.model_extra or {} if body is not None else {}
    kind, regenerate, start, end = _parsed(request.app.state.kinds, values)
    user_id = user_of(caller, "reports")
    wait = await request.app.state.rate_limiter.retry_after(user_id)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many reports started in the last minute; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    begun = await reports.start_report(
        client, settings, user_id=user_id, start=start, end=end, regenerate=regenerate, kind=kind
    )
    tracing.mark_report(begun.report_id)
    started = begun.described(client.namespace, settings)
    # Describe afresh whatever this process held: another replica may have
    # started the run this request joined, and the watcher may still hold the
    # previous run's final document (whose run_id the client would then follow).
    if started is None:
        request.app.state.watchers.poke(begun.report_id)
        snapshot = await _watched(request, begun.report_id, caller)
    else:
        snapshot = request.app.state.watchers.started(started)
    # Serialized once, as status reads are: FastAPI would validate the document
    # against its own model again first.
    return Response(
        snapshot.body,
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": snapshot.doc.links.self, **progress_headers(snapshot.doc)},
        media_type="application/json",
    )


class AnyKindRequest(BaseModel):
    """`{"kind": NAME, ...its parameters}`: checked against the kind's own model."""

    model_config = ConfigDict(extra="allow")


REQUEST_EXAMPLES: dict[str, Any] = {
    "transactions": {"value": {"start": "2026-08-30", "end": "2026-11-27"}},
    "csv": {"value": {"kind": "transactions-csv", "start": "2026-08-30", "end": "2026-11-27"}},
}


def _parsed(
    kinds: KindRegistry, body: dict[str, Any]
) -> tuple[reports.KindRequest | None, bool, date | None, date | None]:
    """The body as (kind, regenerate, start, end); a 422 naming the field otherwise.

    A body naming no kind (or `transactions`) is validated exactly as before kinds."""
    values = dict(body)
    name = values.pop("kind", DEFAULT_KIND)
    if name == DEFAULT_KIND:
        try:
            legacy = ReportRequest.model_validate(values)
        except ValidationError as err:
            raise invalid(err) from None
        return None, legacy.regenerate, *legacy.dates()
    kind = registered(kinds, name)
    regenerate = values.pop("regenerate", False)
    if not isinstance(regenerate, bool):
        raise invalid(None, loc=("regenerate",), msg="regenerate is true or false")
    try:
        params = kind.parse(values)
    except ValidationError as err:
        raise invalid(err) from None
    return reports.KindRequest.of(kind, params), regenerate, None, None


@router.get(
    "/{report_id}",
    response_model=StatusDocument,
    responses={
        304: {"description": "Unchanged since the `ETag` sent in `If-None-Match`"},
        401: problem("No or unknown token"),
        404: problem("No such report"),
    },
)
async def get_report(
    report_id: str, request: Request, caller: CallerDep, run_id: RunIdQuery = None
) -> Response:
    """The report's status document with its `ETag`; `Retry-After` while it is not
    finished; `304` with no body when `If-None-Match` names the current `ETag`.
    With `run_id`, the document of that run (a client following the run it started).

    (The reads that succeed are answered before routing, by StatusReads; this
    route answers the same way, and answers everything else.)"""
    snapshot = await _watched(request, report_id, caller, run_id)
    code, headers, body = status_answer(snapshot, request.headers.get("if-none-match"))
    return Response(body, status_code=code, headers=headers)


# How often an open event stream asks whether its token is still live (the
# token cache answers, and forgets a revoked token at once).
TOKEN_CHECK_SECONDS = 2.0


@router.get(
    "/{report_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "One `status` event per change; closes after the final one",
        },
        404: problem("No such report"),
        429: problem("Too many streams open with this token; wait `Retry-After` seconds"),
    },
)
async def report_events(
    report_id: str, request: Request, caller: CallerDep, run_id: RunIdQuery = None
) -> StreamingResponse:
    """Server-Sent Events: the status document each time it changes (of the run
    `run_id`, when given: a client following the run it started).

    A stream lasts at most EVENTS_MAX_STREAM_SECONDS (then reconnect); a token may
    hold EVENTS_MAX_STREAMS_PER_TOKEN open at once."""
    first = await _watched(request, report_id, caller, run_id)
    streams: StreamCounter = request.app.state.event_streams
    stream = streams.open(caller.token_id)
    if isinstance(stream, int):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"this token already has {streams.max_per_token} event streams open; "
            f"close one, or poll GET /reports/{{id}}, and try again in {stream} s",
            headers={"Retry-After": str(stream)},
        )
    return StreamingResponse(
        _status_events(request, first, caller, stream, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _status_events(
    request: Request, first: Snapshot, caller: Caller, stream: str, run_id: str | None
) -> AsyncIterator[str]:
    try:
        async for event in _status_changes(request, first, run_id):
            yield event
    finally:
        request.app.state.event_streams.close(caller.token_id, stream)


async def _status_changes(
    request: Request, first: Snapshot, run_id: str | None
) -> AsyncIterator[str]:
    """Each new document as soon as the report's watcher has it (it wakes on the
    run's own history events); keep-alive comments in between. A stream ends after
    EVENTS_MAX_STREAM_SECONDS: the client reconnects and counts afresh. It ends
    too within TOKEN_CHECK_SECONDS of its token being revoked or expiring: the
    reconnect then gets the 401."""
    settings: Settings = request.app.state.settings
    watchers: Watchers = request.app.state.watchers
    cache: TokenCache = request.app.state.token_cache
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    now = time.monotonic()
    ends = now + settings.events_max_stream_seconds
    check_at, keepalive_at = now + TOKEN_CHECK_SECONDS, now + settings.events_keepalive_seconds
    with watchers.reading(first.doc.report_id, run_id) as watcher:
        snapshot: Snapshot | None = first
        sent: Snapshot | None = None
        while snapshot is not None:
            now = time.monotonic()
            if sent is None or snapshot.etag != sent.etag:
                doc = snapshot.doc
                payload = snapshot.body.decode()
                yield f"event: status\nid: {doc.updated_at.isoformat()}\ndata: {payload}\n\n"
                sent, keepalive_at = snapshot, now + settings.events_keepalive_seconds
            elif now >= keepalive_at:
                yield ": keep-alive\n\n"  # a comment line keeps proxies from closing the stream
                keepalive_at = now + settings.events_keepalive_seconds
            if snapshot.doc.is_final or watcher.done:
                return  # finished, or the watcher failed: EventSource reconnects
            if now >= ends:
                yield "retry: 1000\n\n"
                return
            if now >= check_at:
                if await cache.lookup(request.app.state.engine, token) is None:
                    log.info(
                        "event stream ended: its token was revoked or expired",
                        extra={"report_id": first.doc.report_id},
                    )
                    return
                check_at = now + TOKEN_CHECK_SECONDS
            wait = max(0.0, min(keepalive_at, check_at, ends) - time.monotonic())
            snapshot = await watcher.changed(sent, wait)


async def _pdf_link(
    report_id: str,
    caller: Caller,
    client: Client,
    store: ReportStore,
    settings: Settings,
    *,
    any_format: bool = False,
) -> DownloadLink:
    try:
        key = await reports.pdf_key_of(
            client, settings, store, report_id, caller=caller, any_format=any_format
        )
    except reports.ReportNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    except (reports.PdfNotReady, reports.NotAPdf) as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    except reports.PdfGone as err:
        raise HTTPException(status.HTTP_410_GONE, detail=f"{err}; {REGENERATE}") from None
    return await download_link(
        store,
        secret=settings.secret_key,
        report_id=report_id,
        key=key,
        lifetime_seconds=settings.download_link_seconds,
        route="file" if any_format else "pdf",
    )


REGENERATE = 'regenerate it with POST /reports and "regenerate": true'
PDF_ERRORS: dict[int | str, dict[str, Any]] = {
    404: problem("No such report"),
    409: problem("Not completed yet"),
    410: problem("The PDF has expired (REPORT_RETENTION_DAYS) or is gone"),
}


@router.get(
    "/{report_id}/pdf",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={
        303: {
            "description": "`Location` is a short-lived URL of the PDF that needs no token",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **PDF_ERRORS,
    },
)
async def get_pdf(
    report_id: str,
    caller: CallerDep,
    client: TemporalDep,
    store: StoreDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """The PDF of a completed report: `303` to a short-lived signed URL."""
    link = await _pdf_link(report_id, caller, client, store, settings)
    return RedirectResponse(
        link.url, status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/{report_id}/file",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={
        303: {
            "description": "`Location` is a short-lived URL of the file that needs no token",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **PDF_ERRORS,
    },
)
async def get_file(
    report_id: str,
    caller: CallerDep,
    client: TemporalDep,
    store: StoreDep,
    settings: SettingsDep,
) -> RedirectResponse:
    """The file of a completed report of any kind and format: `303` to a signed URL."""
    link = await _pdf_link(report_id, caller, client, store, settings, any_format=True)
    return RedirectResponse(
        link.url, status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/{report_id}/file/download",
    response_class=FileResponse,
    responses={
        200: {"description": "The report's file"},
        403: problem("The link expired or was not signed by this service"),
        410: problem("The file is gone"),
    },
)
async def download_file(
    report_id: str,
    store: StoreDep,
    settings: SettingsDep,
    key: Annotated[str, Query(max_length=400)],
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=100)],
) -> FileResponse:
    """A file store's report file through a signed link (the signature is the grant)."""
    return _signed_download(report_id, store, settings, key, expires, sig, route="file")


@router.get("/{report_id}/file/link", response_model=PdfLink, responses=PDF_ERRORS)
async def get_file_link(
    report_id: str,
    caller: CallerDep,
    client: TemporalDep,
    store: StoreDep,
    settings: SettingsDep,
) -> PdfLink:
    """The URL `GET /reports/{id}/file` redirects to, as JSON (for the page's link)."""
    link = await _pdf_link(report_id, caller, client, store, settings, any_format=True)
    return PdfLink(url=link.url, expires_at=link.expires_at)


@router.get("/{report_id}/pdf/link", response_model=PdfLink, responses=PDF_ERRORS)
async def get_pdf_link(
    report_id: str,
    caller: CallerDep,
    client: TemporalDep,
    store: StoreDep,
    settings: SettingsDep,
) -> PdfLink:
    """The URL `GET /reports/{id}/pdf` redirects to, as JSON (for pages that show a link)."""
    link = await _pdf_link(report_id, caller, client, store, settings)
    return PdfLink(url=link.url, expires_at=link.expires_at)


@router.get(
    "/{report_id}/pdf/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The report"},
        403: problem("The link expired or was not signed by this service"),
        410: problem("The PDF is gone"),
    },
)
async def download_pdf(
    report_id: str,
    store: StoreDep,
    settings: SettingsDep,
    key: Annotated[str, Query(max_length=400)],
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=100)],
) -> FileResponse:
    """A file store's PDF through a signed link (no token: the signature is the grant)."""
    return _signed_download(report_id, store, settings, key, expires, sig, route="pdf")


def _signed_download(
    report_id: str,
    store: ReportStore,
    settings: Settings,
    key: str,
    expires: int,
    sig: str,
    *,
    route: str,
) -> FileResponse:
    if not verify(settings.secret_key, report_id, key, expires, sig):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this download link has expired or is not valid; "
            f"get a fresh one from GET /reports/{report_id}/{route}",
        )
    path = store.local_path(key) if isinstance(store, FileStore) else None
    if path is None:
        raise HTTPException(
            status.HTTP_410_GONE, detail=f"the file is no longer in the report store; {REGENERATE}"
        )
    extension = path.suffix.removeprefix(".")
    return FileResponse(
        path,
        media_type=CONTENT_TYPES.get(extension, "application/octet-stream"),
        filename=f"{report_id}.{extension}",
    )


@router.post(
    "/{report_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StatusDocument,
    responses={
        404: problem("No such report"),
        409: problem("Already finished, or the email is already being sent"),
    },
)
async def cancel_report(
    report_id: str, request: Request, caller: CallerDep, client: TemporalDep, settings: SettingsDep
) -> StatusDocument:
    """Ask the run to stop before its email step; it ends as cancelled and sends no email.

    Once the email step has started it is too late: 409, and the report completes.
    """
    try:
        doc = await reports.cancel_report(client, settings, report_id, caller=caller)
    except reports.ReportNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    except reports.CannotCancel as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    request.app.state.watchers.poke(report_id)
    return doc


@router.get("", response_model=ReportList, responses={401: problem("No or unknown token")})
async def list_reports(
    request: Request,
    caller: CallerDep,
    client: TemporalDep,
    settings: SettingsDep,
    status_filter: Annotated[reports.StatusFilter | None, Query(alias="status")] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> ReportList:
    """Your reports, newest first (may lag a moment behind a new report)."""
    listing = reports.Listing(user_of(caller, "reports"), status_filter)
    docs, next_token = await reports.list_reports(
        client,
        settings,
        listing,
        page_size=page_size,
        page_token=decode_page_token(page_token, listing.query, settings.secret_key),
    )
    return ReportList(
        reports=docs,
        next_page_token=encode_page_token(next_token, listing.query, settings.secret_key),
    )
