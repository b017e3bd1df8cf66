"""GenerateReport: query -> render -> email, durable, observable, cancellable.

Deterministic orchestration only. Each stage is published twice: in the memo,
which `describe` returns with no worker running (the API's status comes from
there), and as current details, which the Temporal Web UI shows.
"""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from reportflow.activities.cancel import (
        CANCEL_UPDATE,
        TOO_LATE_TO_CANCEL,
        TOO_LATE_TO_CANCEL_MESSAGE,
        CancelRunInput,
        request_cancel,
    )
    from reportflow.activities.report import ReportActivities
    from reportflow.activities.slots import SlotActivities
    from reportflow.models import (
        DEFAULT_KIND,
        NON_RETRYABLE_ERRORS,
        STAGES,
        Backoff,
        CleanupInput,
        EmailInput,
        EmailResult,
        GenerateReportInput,
        KindData,
        KindQueryInput,
        KindRenderInput,
        Progress,
        QueryInput,
        RefusedRecipient,
        RenderInput,
        RenderResult,
        ReportData,
        ReportResult,
        SlotInput,
        WebhookEvent,
        email_queue,
    )

T = TypeVar("T")
P = TypeVar("P")

# A step's local attempt (see _local_first): the slots (the user at capacity or the
# database away sends the step on as an activity) and the query.
ONE_LOCAL_ATTEMPT = RetryPolicy(maximum_attempts=1)

# The query's local attempt: past this the step runs as an activity, which the status
# shows as `querying` (until then it says `queued`). Well under the SDK's
# workflow-task heartbeat (80% of the 10 s task timeout).
QUERY_LOCAL = timedelta(seconds=2)


def retry_policy(backoff: Backoff) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=backoff.initial_seconds),
        backoff_coefficient=backoff.coefficient,
        maximum_interval=timedelta(seconds=backoff.maximum_seconds),
        maximum_attempts=backoff.maximum_attempts,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    )


def _cancel_requested() -> bool:
    """Whether the run was asked to cancel, even if an awaited activity absorbed it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _error_of(err: ActivityError) -> dict[str, str]:
    """What the dead-letter view shows: reason code, message, and why retrying stopped."""
    cause = err.cause or err
    if isinstance(cause, ApplicationError):
        kind, message = cause.type or "ApplicationError", cause.message
    else:
        kind, message = type(cause).__name__, str(cause) or type(cause).__name__
    retry_state = err.retry_state.name if err.retry_state is not None else "UNSPECIFIED"
    return {"type": kind, "message": message, "retry_state": retry_state}


async def _local_first(
    step: Callable[[Any, P], Awaitable[T]],
    arg: P,
    *,
    local_limit: timedelta,
    limit: timedelta,
    retry: RetryPolicy,
    cancellation: workflow.ActivityCancellationType = workflow.ActivityCancellationType.TRY_CANCEL,
    before_activity: Callable[[], None] = lambda: None,
) -> T:
    """A step as one local attempt, inside the workflow task (no activity task, no
    events of its own beyond a marker); if that attempt fails or times out, as an
    ordinary activity retried by `retry`, which the status and the Web UI show."""
    try:
        return await workflow.execute_local_activity_method(
            step,
            arg,
            start_to_close_timeout=local_limit,
            retry_policy=ONE_LOCAL_ATTEMPT,
            cancellation_type=cancellation,
        )
    except FailureError as err:  # a local activity's failure may come unwrapped
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, CancelledError):
            raise
    before_activity()
    return await workflow.execute_activity_method(
        step,
        arg,
        start_to_close_timeout=limit,
        retry_policy=retry,
        cancellation_type=cancellation,
    )


@workflow.defn(name="GenerateReport")
class GenerateReport:
    """One report run. Pinned to the worker build that started it (Worker Versioning):
    this code is the current process only; a change ships as a new build, and the
    rare change that must reach running runs is a registered patch (see
    reportflow/workflows/patches.py)."""

    def __init__(self) -> None:
        self._progress = Progress()
        self._stage_started: dict[str, datetime] = {}
        self._slot: SlotInput | None = None
        self._webhooks = True
        self._rendered: RenderResult | None = None
        self._kind = DEFAULT_KIND
        # Set once the `cancel` update was accepted: no email step may start after it.
        self._cancel_accepted = False

    @workflow.run
    async def run(self, input: GenerateReportInput) -> ReportResult:
        self._begin(input)
        try:
            await self._take_slot(input)  # queued
            self._enter("querying", publish=False)  # published if the query is slow
            data = await self._query(input)
            self._enter("rendering")
            rendered = await self._render(input, data)
            await self._honour_cancel_before_email()
            self._enter("emailing")
            emailed = await self._email(input, rendered.key)
        except (asyncio.CancelledError, CancelledError):
            await self._end_cancelled(input)
            raise
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                await self._end_cancelled(input)
                raise
            if _cancel_requested():
                # The cancel reached an attempt as it failed (the render waits for its
                # attempt to stop): the user asked to cancel, so the run is cancelled.
                await self._end_cancelled(input)
                raise asyncio.CancelledError("cancelled while an attempt failed") from err
            raise await self._end_failed(input, err) from err
        else:
            return await self._end_completed(input, rendered, emailed)
        finally:
            await self._give_back_slot()

    def _begin(self, input: GenerateReportInput) -> None:
        # A signal may have arrived before the run began: keep what it added.
        added = self._progress.recipients
        self._progress.recipients = [
            *input.recipients,
            *(r for r in added if r not in input.recipients),
        ]
        # Not recorded again when the run is replayed (on another worker, after a crash).
        # Labelled by kind: a registered name (the API refuses others), so bounded.
        self._kind = input.kind
        workflow.metric_meter().create_counter(
            "reportflow_reports_started", "Report runs started"
        ).add(1, {"kind": input.kind})

    async def _honour_cancel_before_email(self) -> None:
        if _cancel_requested():
            # A cancel that reached a render as it finished was absorbed by the
            # render's WAIT_CANCELLATION_COMPLETED: honour it before the email.
            raise asyncio.CancelledError("cancelled before the email step")
        if self._cancel_accepted:
            # The `cancel` update promised no email; its handler is recording the
            # cancel request, whose arrival raises CancelledError here.
            await workflow.wait_condition(lambda: False)

    # The three ends: completed, cancelled, failed.

    async def _end_completed(
        self, input: GenerateReportInput, rendered: RenderResult, emailed: EmailResult
    ) -> ReportResult:
        result = ReportResult(
            pdf_key=rendered.key,
            pages=rendered.pages,
            bytes=rendered.bytes,
            emailed_to=emailed.recipients,
            message_id=emailed.message_id,
            format=rendered.format,
            content_type=rendered.content_type,
            refused=emailed.refused,
        )
        self._enter("done", {"result": _result_memo(input, result)})
        self._record_durations("completed")
        await self._announce(input, "completed", refused=result.refused)
        return result

    async def _end_cancelled(self, input: GenerateReportInput) -> None:
        """Remove partial artifacts of a cancelled run, then say so; runs after the cancel."""
        self._record_durations("cancelled")
        workflow.upsert_memo({"cancelled_at": workflow.now().isoformat(), **self._times()})
        await self._remove_pdf(input.report_id, self._pdf_key())
        await self._announce(input, "cancelled")

    async def _end_failed(self, input: GenerateReportInput, err: ActivityError) -> ApplicationError:
        """Record why in the memo (the dead-letter view), remove the PDF, say so; the
        error returned is what the run fails with."""
        error = {**_error_of(err), "stage": self._progress.stage}
        workflow.upsert_memo({"error": error, **self._times()})
        self._record_durations("failed")
        pdf_key = self._pdf_key()
        if pdf_key is not None:
            await self._remove_pdf(input.report_id, pdf_key)
        await self._announce(input, "failed", error)
        return ApplicationError(
            f"{error['stage']} failed: {error['message']}",
            type=error["type"],
            non_retryable=True,
        )

    def _pdf_key(self) -> str | None:
        return self._rendered.key if self._rendered is not None else None

    # Slots: MAX_RUNNING_REPORTS_PER_USER.

    async def _take_slot(self, input: GenerateReportInput) -> None:
        """Stay `queued` until one of the user's slots is free (retried with backoff:
        an attempt adds nothing to the history)."""
        workflow.set_current_details("**Stage:** queued (waiting for a free slot of this user)")
        slot = SlotInput(input.user_id, input.report_id, workflow.info().run_id)
        # Given back however the wait ends: a cancel can reach an attempt that is
        # taking the slot, and giving back one that was never taken is harmless.
        self._slot = slot
        grant = await self._slot_step(
            SlotActivities.acquire_slot,
            slot,
            RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=1.5,
                maximum_interval=timedelta(seconds=10),
                maximum_attempts=0,  # as long as it takes; a cancel still ends the wait
            ),
        )
        self._webhooks = grant.webhooks
        if _cancel_requested():
            # The cancel reached the attempt as it took the slot (it waits for the
            # attempt to end, see _slot_step): honour it before the first step.
            raise asyncio.CancelledError("cancelled while taking a slot")

    async def _give_back_slot(self) -> None:
        if self._slot is not None:
            await self._slot_step(
                SlotActivities.release_slot,
                self._slot,
                RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )

    async def _slot_step(
        self,
        step: Callable[[SlotActivities, SlotInput], Awaitable[T]],
        slot: SlotInput,
        retry: RetryPolicy,
    ) -> T:
        """Take or give back a slot. A cancel waits for the attempt in flight to end,
        so the slot it may have taken is given back after it, never before."""
        return await _local_first(
            step,
            slot,
            local_limit=timedelta(seconds=30),
            limit=timedelta(seconds=30),
            retry=retry,
            cancellation=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    # The steps.

    async def _query(self, input: GenerateReportInput) -> ReportData | KindData:
        """The transactions kind's typed query, or a kind's by name (its code runs in
        the worker, never in this sandbox)."""
        if input.kind == DEFAULT_KIND:
            return await self._query_step(
                ReportActivities.query,
                QueryInput(input.report_id, input.user_id, input.start, input.end),
                input,
            )
        return await self._query_step(
            ReportActivities.query_kind,
            KindQueryInput(input.report_id, input.user_id, input.kind, input.params),
            input,
        )

    async def _query_step(
        self,
        step: Callable[[ReportActivities, P], Awaitable[T]],
        arg: P,
        input: GenerateReportInput,
    ) -> T:
        """Local first, in the workflow task that took the slot: a query of
        milliseconds then costs no activity task and no upsert of its own (the memo
        goes from `queued` to `rendering`). One that fails or outlasts QUERY_LOCAL
        publishes `querying` and runs as an activity with its retries."""
        timeout = timedelta(seconds=input.timeouts.query)
        return await _local_first(
            step,
            arg,
            local_limit=min(timeout, QUERY_LOCAL),
            limit=timeout,
            retry=retry_policy(input.retry.query),
            before_activity=self._publish,
        )

    async def _render(
        self, input: GenerateReportInput, data: ReportData | KindData
    ) -> RenderResult:
        timeout = timedelta(seconds=input.timeouts.render)
        heartbeat = timedelta(seconds=input.timeouts.render_heartbeat)
        retry = retry_policy(input.retry.render)
        # Wait for the render to stop before cleaning up, so it cannot write its
        # file after the cleanup removed it.
        wait = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        if isinstance(data, ReportData):
            rendered = await workflow.execute_activity_method(
                ReportActivities.render,
                RenderInput(data),
                start_to_close_timeout=timeout,
                heartbeat_timeout=heartbeat,
                retry_policy=retry,
                cancellation_type=wait,
            )
        else:
            rendered = await workflow.execute_activity_method(
                ReportActivities.render_kind,
                KindRenderInput(input.report_id, input.user_id, input.kind, input.params, data),
                start_to_close_timeout=timeout,
                heartbeat_timeout=heartbeat,
                retry_policy=retry,
                cancellation_type=wait,
            )
        self._rendered = rendered
        return rendered

    def _email_input(self, input: GenerateReportInput, pdf_key: str) -> EmailInput:
        email = EmailInput(
            report_id=input.report_id,
            user_id=input.user_id,
            pdf_key=pdf_key,
            start=input.start,
            end=input.end,
            extra_recipients=list(self._progress.recipients),
        )
        if input.kind != DEFAULT_KIND and self._rendered is not None:
            # Another kind's file; the transactions email's input stays as it was.
            email.kind = input.kind
            email.format = self._rendered.format
            email.content_type = self._rendered.content_type
            email.bytes = self._rendered.bytes
        return email

    async def _announce(
        self,
        input: GenerateReportInput,
        outcome: str,
        error: dict[str, str] | None = None,
        refused: list[RefusedRecipient] | None = None,
    ) -> None:
        """Tell the user's webhook endpoints: a child that outlives this run (ABANDON),
        so the report is final at once while a receiver that is down gets retried."""
        if not self._webhooks:
            return
        event = WebhookEvent(
            report_id=input.report_id,
            run_id=workflow.info().run_id,
            user_id=input.user_id,
            outcome=outcome,
            start=input.start,
            end=input.end,
            occurred_at=workflow.now().isoformat(),
            error=error,
            retry=input.retry.webhook,
            attempt_seconds=input.timeouts.webhook,
            kind=input.kind,
            refused=list(refused or []),
        )
        await workflow.start_child_workflow(
            "DeliverWebhooks",
            event,
            id=event.workflow_id,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )

    async def _email(self, input: GenerateReportInput, pdf_key: str) -> EmailResult:
        """The email step, shielded: once it has started a cancel is too late (the
        API answers 409), and the run completes rather than claim it sent nothing."""
        sending = asyncio.ensure_future(self._send(input, pdf_key))
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            workflow.logger.info("cancel arrived while the email is being sent; completing")
            return await sending

    def _send(self, input: GenerateReportInput, pdf_key: str) -> Awaitable[EmailResult]:
        # On its own task queue, which the workers serve with a rate limit
        # (EMAIL_RATE_PER_SECOND) that Temporal enforces across all of them.
        return workflow.execute_activity_method(
            ReportActivities.send_email,
            self._email_input(input, pdf_key),
            task_queue=email_queue(workflow.info().task_queue),
            start_to_close_timeout=timedelta(seconds=input.timeouts.email),
            retry_policy=retry_policy(input.retry.email),
        )

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self) -> None:
        """Cancel the run unless its email step has started (POST /reports/{id}/cancel).

        Accepted by the validator below, in the workflow's own order of events, so an
        accepted cancel means no email: the run cannot have entered `emailing` in
        between, and after it the email step waits for the cancel request instead.
        """
        self._cancel_accepted = True
        info = workflow.info()
        await workflow.execute_local_activity(
            request_cancel,
            CancelRunInput(report_id=info.workflow_id, run_id=info.run_id),
            start_to_close_timeout=timedelta(seconds=10),
            # Until Temporal has it: the run now waits for this request.
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5)),
        )

    @cancel.validator
    def _may_cancel(self) -> None:
        if self._progress.stage in {"emailing", "done"}:
            raise ApplicationError(TOO_LATE_TO_CANCEL_MESSAGE, type=TOO_LATE_TO_CANCEL)

    @workflow.query
    def progress(self) -> Progress:
        return self._progress

    @workflow.signal
    def add_recipient(self, email: str) -> None:
        """Add a recipient (well-formed, a handful at most); too late once emailing."""
        address = email.strip() if isinstance(email, str) else ""
        refusal = self._progress.recipient_refusal(address)
        if refusal is not None:
            workflow.logger.warning("add_recipient ignored %r: %s", email, refusal)
            return
        if address not in self._progress.recipients:
            self._progress.recipients.append(address)
            # In the memo too, so a redrive of a failed run keeps the recipient.
            workflow.upsert_memo({"recipients": list(self._progress.recipients)})

    def _times(self) -> dict[str, str]:
        return {"updated_at": workflow.now().isoformat()}

    def _enter(
        self, stage: str, memo: Mapping[str, object] | None = None, *, publish: bool = True
    ) -> None:
        """Enter `stage`: the query and the Web UI's details say so at once; the memo
        (the API's status) in one upsert with `memo`'s other keys, unless `publish`
        is False, when the next `_publish` or `_enter` carries it."""
        self._stage_started[stage] = workflow.now()
        self._progress.stage = stage
        self._progress.progress = STAGES[stage]
        self._progress.updated_at = workflow.now().isoformat()
        workflow.set_current_details(f"**Stage:** {stage} ({STAGES[stage]}%)")
        if publish:
            self._publish(memo)

    def _publish(self, memo: Mapping[str, object] | None = None) -> None:
        """The current stage in the memo: one upsert, one history event, one action."""
        workflow.upsert_memo(
            {
                **(memo or {}),
                "stage": self._progress.stage,
                "progress": self._progress.progress,
                "updated_at": self._progress.updated_at,
            }
        )

    def _record_durations(self, outcome: str) -> None:
        """Report and per-stage durations (retries and backoff included) on the
        worker's metrics endpoint; the SDK skips this while replaying."""
        meter = workflow.metric_meter()
        now = workflow.now()
        meter.create_histogram_float(
            "reportflow_report_duration", "Report start to end", "seconds"
        ).record(
            (now - workflow.info().start_time).total_seconds(),
            {"outcome": outcome, "kind": self._kind},
        )
        stages = meter.create_histogram_float(
            "reportflow_stage_duration", "Time spent in each stage", "seconds"
        )
        # A run cancelled while queued (waiting for a slot) entered no stage.
        ends = [*list(self._stage_started.values())[1:], now][: len(self._stage_started)]
        for (stage, began), ended in zip(self._stage_started.items(), ends, strict=True):
            if stage != "done":
                stages.record((ended - began).total_seconds(), {"stage": stage, "kind": self._kind})

    async def _remove_pdf(self, report_id: str, pdf_key: str | None) -> None:
        try:
            await workflow.execute_activity_method(
                ReportActivities.cleanup,
                CleanupInput(report_id=report_id, pdf_key=pdf_key),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    maximum_attempts=5, maximum_interval=timedelta(seconds=10)
                ),
            )
        except ActivityError as err:
            # The report store is away: the run still ends as what it is (cancelled
            # or failed) and says so, and never lands in the dead-letter view, where
            # a redrive would email a report the user cancelled. The PDF left behind
            # is written like any other, so the retention schedule removes it.
            workflow.logger.warning(
                "could not remove the run's PDF; the retention schedule will: %s",
                err.cause or err,
                extra={"report_id": report_id, "pdf_key": pdf_key},
            )


def _result_memo(input: GenerateReportInput, result: ReportResult) -> dict[str, Any]:
    """The memo's `result`: what the status document shows of a completed run."""
    memo: dict[str, Any] = {
        "pages": result.pages,
        "bytes": result.bytes,
        "emailed_to": result.emailed_to,
        "message_id": result.message_id,
    }
    if input.kind != DEFAULT_KIND:
        # Another kind's file: what the status document links and describes.
        memo.update(format=result.format, content_type=result.content_type, key=result.pdf_key)
    if result.refused:
        memo["refused"] = [dataclasses.asdict(r) for r in result.refused]
    return memo
