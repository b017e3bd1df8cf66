"""The operations on reports every front door shares: start, cancel, PDF, redrive, list.

`POST /reports`, the schedules, the admin API and `reportflow dlq` start runs
here, so a redriven or scheduled report carries the same memo, search attribute
and summary as a new one; the routes and commands only translate to these calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from reportflow.core.audit import audit
from reportflow.core.codec import encrypted
from reportflow.core.config import Settings
from reportflow.core.store import file_key
from reportflow.core.temporal import USER_ID_KEY
from reportflow.kinds import ReportKind, canonical_params, params_hash
from reportflow.models import (
    CANCEL_UPDATE,
    DEFAULT_KIND,
    TOO_LATE_TO_CANCEL,
    TOO_LATE_TO_CANCEL_MESSAGE,
    WORKFLOW_TYPE,
    GenerateReportInput,
)
from reportflow.service.status import (
    Described,
    StartedExecution,
    build_document,
    describe_report,
    owner_of,
    status_filter,
    statuses_of,
)

if TYPE_CHECKING:
    from reportflow.contract import StatusDocument
    from reportflow.core.store import ReportStore
    from reportflow.core.tokens import Caller

log = logging.getLogger(__name__)

# Temporal's priority keys: lower runs first (1-5, default 3). A report someone
# is waiting for (the page, the API, `reportflow request`) outranks scheduled
# and bulk ones; among equals, each user is a fairness key, so one user's 300
# reports do not hold up another user's one.
INTERACTIVE = 1
BACKGROUND = 3


def priority_for(user_id: str, priority_key: int) -> Priority:
    # The fairness key is at most 64 bytes; the activities inherit both.
    return Priority(
        priority_key=priority_key, fairness_key=user_id.encode()[:64].decode(errors="ignore")
    )


def report_id_for(user_id: str, start: date, end: date) -> str:
    """Deterministic: the same user and range always name the same report."""
    return f"report-{user_id}-{start.isoformat()}-{end.isoformat()}"


@dataclass(frozen=True)
class KindRequest:
    """A report of another kind than the transactions PDF: what its start needs,
    all plain text (a redrive rebuilds it from the memo, with no registry)."""

    name: str
    params: str  # canonical JSON (reportflow.kinds.canonical_params)
    title: str
    format: str

    @classmethod
    def of(cls, kind: ReportKind, params: BaseModel) -> KindRequest:
        return cls(kind.name, canonical_params(params), kind.title, kind.format)

    def report_id(self, user_id: str) -> str:
        """Same user, kind and canonical parameters: the same report."""
        return f"report-{user_id}-{self.name}-{params_hash(self.params)}"

    def dates(self) -> tuple[date | None, date | None]:
        """The range, when the kind's parameters have one (shown in status and events)."""
        values = json.loads(self.params or "{}")
        found: list[date | None] = []
        for name in ("start", "end"):
            try:
                found.append(date.fromisoformat(str(values[name])))
            except (KeyError, ValueError):
                found.append(None)
        return found[0], found[1]

    def memo(self) -> dict[str, object]:
        return {
            "kind": self.name,
            "params": json.loads(self.params or "{}"),
            "title": self.title,
            "format": self.format,
        }


@dataclass(frozen=True)
class ReportStart:
    report_id: str
    # The run this start made, when it made one (None: an open or completed run stays).
    new_run_id: str | None
    # False only when a completed run keeps the ID.
    joined_or_started: bool
    user_id: str
    start: date | None
    end: date | None
    # When the request was taken, kept in the new run's memo (see `build_document`).
    created_at: datetime
    kind: KindRequest | None = None

    def described(self, namespace: str, settings: Settings) -> Described | None:
        """The new run as a describe of it would find it, known without asking
        Temporal (None when no run was started: describe the one that is there).
        Its history so far is the start's event; what follows comes from the run."""
        if self.new_run_id is None:
            return None
        execution = StartedExecution(
            id=self.report_id,
            run_id=self.new_run_id,
            namespace=namespace,
            start_time=self.created_at,
        )
        memo = start_memo(self)
        return Described(
            doc=build_document(execution, memo, settings=settings),
            owner=self.user_id,
            execution=execution,
            memo=memo,
            history_length=1,  # WorkflowExecutionStarted
            next_attempt_at=None,
            activity_pending=False,
        )


async def start_report(
    client: Client,
    settings: Settings,
    *,
    user_id: str,
    start: date | None = None,
    end: date | None = None,
    regenerate: bool = False,
    recipients: list[str] | None = None,
    priority_key: int = INTERACTIVE,
    kind: KindRequest | None = None,
) -> ReportStart:
    """Start the report's workflow unless one is open or completed.

    Four clicks, one run: an open run is returned as it is (USE_EXISTING); a
    completed one is kept (its ID may not be reused); a failed, timed-out,
    terminated or cancelled one starts afresh. `regenerate` lets a completed
    report run again, still never beside an open run.

    With no `kind`, the transactions PDF of `start`..`end`, under the ID it has
    always had; with one, that kind's report of its parameters.
    """
    if kind is None:
        assert start is not None and end is not None, "the transactions report needs a range"
        report_id = report_id_for(user_id, start, end)
        summary = f"Report for user {user_id}: {start} to {end} ({DEFAULT_KIND})"
    else:
        report_id = kind.report_id(user_id)
        start, end = kind.dates()
        # The Web UI's summary names the kind, as ops filter and read by it.
        summary = f"Report for user {user_id}: {kind.title} ({kind.name}) {kind.params}"[:200]
    begun = ReportStart(
        report_id,
        new_run_id=None,
        joined_or_started=False,
        user_id=user_id,
        start=start,
        end=end,
        kind=kind,
        created_at=datetime.now(UTC),
    )
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            GenerateReportInput(
                report_id=report_id,
                user_id=user_id,
                start=start.isoformat() if start else "",
                end=end.isoformat() if end else "",
                retry=settings.retry,
                timeouts=settings.timeouts,
                recipients=list(recipients or []),
                **({"kind": kind.name, "params": kind.params} if kind else {}),
            ),
            id=report_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if regenerate
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
            ),
            memo={
                **start_memo(begun),
                **({"recipients": list(recipients)} if recipients else {}),
            },
            search_attributes=TypedSearchAttributes([SearchAttributePair(USER_ID_KEY, user_id)]),
            static_summary=summary,
            priority=priority_for(user_id, priority_key),
        )
    except WorkflowAlreadyStartedError:
        log.info("report already completed", extra={"report_id": report_id})
        return begun
    # The server says whether it started a run or an open one was kept
    # (USE_EXISTING); the SDK keeps its answer on the handle. Unknown = kept,
    # and the caller describes the run.
    response = getattr(handle, "_start_workflow_response", None)
    started = bool(getattr(response, "started", False))
    log.info(
        "report run started" if started else "report run joined",
        extra={"report_id": report_id, "user_id": user_id, "run_id": handle.result_run_id},
    )
    return replace(
        begun, new_run_id=handle.result_run_id if started else None, joined_or_started=True
    )


def start_memo(begun: ReportStart) -> dict[str, Any]:
    """The memo a run starts with: what its status document shows before any step."""
    return {
        "user_id": begun.user_id,
        **(
            {"start": begun.start.isoformat(), "end": begun.end.isoformat()}
            if begun.start and begun.end
            else {}
        ),
        **(begun.kind.memo() if begun.kind else {}),
        "stage": "queued",
        "progress": 0,
        "created_at": begun.created_at.isoformat(),
    }


def kind_for_period(
    kind: ReportKind, values: Mapping[str, Any], start: date, end: date
) -> KindRequest:
    """A scheduled run's kind request: its parameters, with the run's period as the
    range when the kind has one (raises pydantic's ValidationError)."""
    fields = kind.params.model_fields
    period = {"start": start.isoformat(), "end": end.isoformat()}
    ranged = {k: v for k, v in period.items() if k in fields}
    return KindRequest.of(kind, kind.parse({**values, **ranged}))


class ReportNotFound(LookupError):
    """No such report, or not one the caller may see."""


class CannotCancel(Exception):
    """The report has finished, or its email is already being sent."""


# How long the API waits for a worker to take the `cancel` update before it falls
# back to a plain cancel request (see cancel_report). A busy worker answers in
# milliseconds; no worker at all never does.
CANCEL_UPDATE_WAIT_SECONDS = 5.0


async def cancel_report(
    client: Client, settings: Settings, report_id: str, *, caller: Caller
) -> StatusDocument:
    """Cancel the run the caller sees unless its email step has started; its document as it was.

    The answer comes from the workflow itself: the `cancel` Workflow Update, whose
    validator refuses once the run is `emailing`, so an accepted cancel means no
    email even when the run reached `emailing` after the read below.
    """
    doc = await describe_report(client, report_id, caller=caller, settings=settings)
    if doc is None:
        raise ReportNotFound(report_id)
    if doc.is_final:
        raise CannotCancel(f"the report is already {doc.status}")
    if doc.stage in {"emailing", "done"}:
        raise CannotCancel(TOO_LATE_TO_CANCEL_MESSAGE)
    # The run the caller saw, never a newer one started since.
    handle = client.get_workflow_handle(report_id, run_id=doc.run_id)
    how, delivered = "update", True
    try:
        delivered = await _update_within(handle, CANCEL_UPDATE_WAIT_SECONDS)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == TOO_LATE_TO_CANCEL:
            raise CannotCancel(TOO_LATE_TO_CANCEL_MESSAGE) from err
        # A run of code older than the update (it refuses an unknown update): ask
        # as `temporal workflow cancel` does; that code checks the stage itself.
        log.warning(
            "the run refused the cancel update; requesting a cancel",
            extra={"report_id": report_id, "run_id": doc.run_id, "reason": str(cause)},
        )
        how = "request"
        await _request_cancel(client, settings, report_id, doc.run_id, caller=caller)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await _closed_meanwhile(client, settings, report_id, caller=caller, err=err)
    if not delivered:
        # No worker took the update (an update needs one; TRAPS): record a cancel
        # request, which the run obeys when a worker next runs it. With no worker
        # running it, a stage read now stays true until the request is recorded, and
        # a worker that comes back gets the request with the task that would end the
        # render, where the run honours it before the email step. Only a worker that
        # takes that task in the moment between the read and the request can still
        # email: the price of answering at all while no worker is up.
        now = await describe_report(client, report_id, caller=caller, settings=settings)
        if now is None:
            raise ReportNotFound(report_id) from None
        if now.is_final:
            raise CannotCancel(f"the report is already {now.status}") from None
        if now.stage in {"emailing", "done"}:
            raise CannotCancel(TOO_LATE_TO_CANCEL_MESSAGE) from None
        how = "request"
        await _request_cancel(client, settings, report_id, doc.run_id, caller=caller)
    log.info(
        "cancel accepted",
        extra={"report_id": report_id, "run_id": doc.run_id, "cancelled_by": how},
    )
    if caller.is_admin or owner_of(report_id) != caller.user_id:
        audit(caller.name, "cancel", report_id)
    return doc


async def _update_within(handle: WorkflowHandle[Any, Any], seconds: float) -> bool:
    """Send the `cancel` update; False when no worker completed it within `seconds`.

    One deadline for the whole exchange: the SDK polls the update again after an
    RPC timeout, so `rpc_timeout` alone let it take twice as long.
    """
    try:
        async with asyncio.timeout(seconds):
            await handle.execute_update(CANCEL_UPDATE, rpc_timeout=timedelta(seconds=seconds))
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # The SDK turns our deadline's cancellation into its own error; a
        # cancellation of the request itself (the client left) goes on up.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        return False
    return True


async def _request_cancel(
    client: Client, settings: Settings, report_id: str, run_id: str | None, *, caller: Caller
) -> None:
    try:
        await client.get_workflow_handle(report_id, run_id=run_id).cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await _closed_meanwhile(client, settings, report_id, caller=caller, err=err)


async def _closed_meanwhile(
    client: Client, settings: Settings, report_id: str, *, caller: Caller, err: RPCError
) -> None:
    """The run closed between the read and the cancel: say how it ended."""
    now = await describe_report(client, report_id, caller=caller, settings=settings)
    if now is None:
        raise ReportNotFound(report_id) from err
    raise CannotCancel(f"the report is already {now.status}") from err


class PdfNotReady(Exception):
    """The report has not completed: no PDF yet."""


class PdfGone(Exception):
    """The PDF expired (REPORT_RETENTION_DAYS) or is no longer in the report store."""


class NotAPdf(Exception):
    """The report's kind makes another format than PDF."""


async def pdf_key_of(
    client: Client,
    settings: Settings,
    store: ReportStore,
    report_id: str,
    *,
    caller: Caller,
    any_format: bool = False,
) -> str:
    """The store key of a completed report's PDF (or, `any_format`, its file of
    whatever format its kind makes), checked to be there."""
    doc = await describe_report(client, report_id, caller=caller, settings=settings)
    if doc is None:
        raise ReportNotFound(report_id)
    if not any_format and doc.format != "pdf":
        raise NotAPdf(
            f"a {doc.kind} report is a {doc.format} file, not a PDF; "
            f"download it with GET /reports/{report_id}/file"
        )
    noun = "PDF" if doc.format == "pdf" else "file"
    if doc.status != "completed" or doc.result is None or doc.run_id is None:
        raise PdfNotReady(
            f"the report is {doc.status} (stage {doc.stage}); "
            f"the {noun} is available once its status is completed"
        )
    if doc.result.pdf_expired:
        raise PdfGone(
            f"the PDF expired on {doc.result.pdf_expires_at:%Y-%m-%d} and was removed "
            f"(it is kept for {settings.report_retention_days:g} days; the email was sent)"
        )
    key = file_key(report_id, doc.run_id, doc.format)
    if not await store.exists(key):
        raise PdfGone(f"the {noun} is no longer in the report store")
    if caller.is_admin:
        # An admin reading a user's statement is the access an audit must show.
        audit(caller.name, "download pdf", report_id, owner=owner_of(report_id))
    return key


def kind_of_memo(memo: Mapping[str, Any]) -> KindRequest | None:
    """The kind a run was started with (None: the transactions PDF, as before kinds)."""
    name = memo.get("kind")
    if not name or name == DEFAULT_KIND:
        return None
    params = memo.get("params") or {}
    return KindRequest(
        name=str(name),
        params=json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        title=str(memo.get("title") or name),
        format=str(memo.get("format") or "pdf"),
    )


class NotRedrivable(Exception):
    """The report does not exist or its latest run did not fail."""


async def redrive(
    client: Client, settings: Settings, report_id: str, *, actor: str | None = None
) -> str:
    """Run a failed report again under the same ID; returns the new run's ID.

    `actor` (who asked, for the audit trail) is recorded when given."""
    handle = client.get_workflow_handle(report_id)
    try:
        description = await handle.describe()
    except Exception as err:
        raise NotRedrivable(f"no report {report_id}") from err
    if description.status not in statuses_of("failed"):
        state = description.status.name.lower() if description.status else "unknown"
        raise NotRedrivable(f"{report_id} is {state}; only failed reports can be redriven")
    memo_fields = description.raw_description.workflow_execution_info.memo.fields.values()
    if not memo_fields or not all(map(encrypted, memo_fields)):
        # Started in clear, by someone without the keyring: its memo (user,
        # recipients) is theirs, not the user's; the worker refused the run.
        raise NotRedrivable(
            f"{report_id} was not started by reportflow (its payloads are not encrypted); "
            "the user can ask for the report again"
        )
    memo = await description.memo()
    kind = kind_of_memo(memo)
    await start_report(
        client,
        settings,
        user_id=str(memo["user_id"]),
        start=None if kind else date.fromisoformat(str(memo["start"])),
        end=None if kind else date.fromisoformat(str(memo["end"])),
        recipients=[str(r) for r in memo.get("recipients") or []],
        priority_key=BACKGROUND,
        kind=kind,
    )
    run_id = (await handle.describe()).run_id
    if actor is not None:
        audit(actor, "redrive", report_id, run_id=run_id)
    return run_id


StatusFilter = Literal["queued", "running", "completed", "failed", "cancelled"]

# The visibility filter for each status word of the contract ("queued" and
# "running" are both open runs; the memo's stage tells them apart).
STATUS_FILTERS: dict[StatusFilter, str] = {
    word: status_filter(word) for word in ("queued", "running", "completed", "failed", "cancelled")
}


@dataclass(frozen=True)
class Listing:
    """One user's reports, of one status or all: a page token belongs to one listing."""

    user_id: str
    status: StatusFilter | None = None

    @property
    def query(self) -> str:
        query = f"WorkflowType = '{WORKFLOW_TYPE}' AND {USER_ID_KEY.name} = '{self.user_id}'"
        if self.status:
            query += f" AND {STATUS_FILTERS[self.status]}"
        return query


async def list_reports(
    client: Client,
    settings: Settings,
    listing: Listing,
    *,
    page_size: int,
    page_token: bytes | None,
) -> tuple[list[StatusDocument], bytes | None]:
    """One page of the user's reports, newest first (may lag a moment behind a new
    report: visibility), and Temporal's token of the next page."""
    pages = client.list_workflows(listing.query, page_size=page_size, next_page_token=page_token)
    await pages.fetch_next_page(page_size=page_size)
    docs = []
    seen: set[str] = set()
    for execution in pages.current_page or []:
        # Newest first: a report run again (failed, then restarted) shows its latest run.
        if execution.id in seen:
            continue
        seen.add(execution.id)
        doc = build_document(execution, await execution.memo(), settings=settings)
        running = execution.status == WorkflowExecutionStatus.RUNNING
        if listing.status in {"queued", "running"} and running and doc.status != listing.status:
            continue
        docs.append(doc)
    # Temporal's SQL visibility cannot ORDER BY; it lists running runs first,
    # then by close time. Within a page, newest (by creation) first.
    docs.sort(key=lambda d: d.created_at, reverse=True)
    return docs, pages.next_page_token
