"""Request and response models of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from reportflow.models import DEFAULT_KIND
from reportflow.report.builtin_kinds import DateRange
from reportflow.report.builtin_kinds import today as today  # re-exported: tests and callers use it

Status = Literal["queued", "running", "completed", "failed", "cancelled"]
Stage = Literal["queued", "querying", "rendering", "emailing", "done"]


class ReportRequest(DateRange):
    """Dates are inclusive; both default to the last 90 days ending today (UTC).

    The `transactions` kind's request, as it was before kinds: a body naming
    another `kind` is validated against that kind's parameters instead."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"start": "2026-08-30", "end": "2026-11-27"}]},
    )

    regenerate: StrictBool = Field(
        False, description="Run a completed report again (only when none is running)"
    )


class RefusedRecipientDoc(BaseModel):
    address: str
    code: int = Field(description="The mail server's reply code, e.g. 550")
    message: str = Field(description="The mail server's words with it")


class ReportResultDoc(BaseModel):
    pdf_url: str | None = Field(None, description="The PDF (PDF kinds only)")
    file_url: str = Field(description="The report's file, any format: `303` to a signed URL")
    format: str = Field("pdf", description="The file's format (its extension)")
    content_type: str = "application/pdf"
    pages: int = Field(description="Pages of a PDF; 0 for other formats")
    bytes: int
    emailed_to: list[str] = Field(description="The recipients the mail server accepted")
    message_id: str
    refused: list[RefusedRecipientDoc] = Field(
        default_factory=list,
        description="Recipients the mail server refused while it accepted the email for "
        "the others: not emailed, and not retried",
    )
    pdf_expires_at: datetime | None = Field(
        None, description="When the PDF is removed (REPORT_RETENTION_DAYS); the email stays sent"
    )
    pdf_expired: bool = Field(False, description="The PDF was removed: downloading answers 410")


class ErrorDoc(BaseModel):
    """Why a report failed, for its user: the failure's type, a stable `code` and a
    sentence. Host names, server replies and stacks are for operators
    (GET /admin/reports?status=failed, the Web UI, the logs)."""

    type: str
    code: str = Field(description="stable: e.g. email_rejected, no_email_address")
    message: str


class RetryDoc(BaseModel):
    """Present while a step is waiting to be tried again."""

    activity: str
    attempt: int
    maximum_attempts: int
    last_error: str | None
    next_attempt_at: datetime | None


class Links(BaseModel):
    self: str
    events: str
    pdf: str
    file: str
    # Temporal's Web UI is an internal address: operators find the run there by
    # report ID; the status document no longer points users at it.
    temporal_ui: str | None = None


class StatusDocument(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "report_id": "report-u0001-2026-08-30-2026-11-27",
                    "kind": "transactions",
                    "title": "Transaction report",
                    "params": None,
                    "format": "pdf",
                    "status": "running",
                    "stage": "rendering",
                    "progress": 40,
                    "attempt": 1,
                    "last_error": None,
                    "start": "2026-08-30",
                    "end": "2026-11-27",
                    "created_at": "2026-11-27T10:00:00Z",
                    "updated_at": "2026-11-27T10:00:01Z",
                    "completed_at": None,
                    "result": None,
                    "error": None,
                    "retry": None,
                    "links": {
                        "self": "/reports/report-u0001-2026-08-30-2026-11-27",
                        "events": "/reports/report-u0001-2026-08-30-2026-11-27/events",
                        "pdf": "/reports/report-u0001-2026-08-30-2026-11-27/pdf",
                        "file": "/reports/report-u0001-2026-08-30-2026-11-27/file",
                    },
                }
            ]
        }
    )

    report_id: str
    kind: str = Field(DEFAULT_KIND, description="The report kind (GET /kinds)")
    title: str = Field("Transaction report", description="The kind's title")
    params: dict[str, Any] | None = Field(
        None, description="The kind's parameters (None for a transactions report: start, end)"
    )
    format: str = Field("pdf", description="The format of the report's file")
    status: Status
    stage: Stage
    progress: int = Field(ge=0, le=100)
    attempt: int
    last_error: str | None
    start: date | None = Field(description="First day (None for a kind without a range)")
    end: date | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    result: ReportResultDoc | None
    error: ErrorDoc | None
    retry: RetryDoc | None = None
    waiting: str | None = Field(
        None,
        description="Why a report is not moving: waiting for a free slot of its user "
        "(MAX_RUNNING_REPORTS_PER_USER) or for its turn to send (EMAIL_RATE_PER_SECOND)",
    )
    links: Links
    run_id: str | None = Field(
        None, description="The Temporal run this document describes (a cancel targets it)"
    )

    @property
    def is_final(self) -> bool:
        return self.status in {"completed", "failed", "cancelled"}


class ReportList(BaseModel):
    reports: list[StatusDocument]
    next_page_token: str | None = Field(
        None, description="Pass as `page_token` to get the next page; null on the last page"
    )


class Problem(BaseModel):
    """Every 4xx/5xx body: what happened and what to do."""

    detail: Any


def problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# Answers any authenticated route may give, documented once per router.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("The body is not JSON"),
    401: problem("No or unknown bearer token"),
    422: problem("Invalid input: `detail` says what to change"),
    503: problem("Temporal is unavailable; retry after `Retry-After` seconds"),
}


class PdfLink(BaseModel):
    """A short-lived URL of the PDF that needs no Bearer header (S3 presigned, or signed
    by the API for a file store); ask again once `expires_at` has passed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "/reports/report-u0001-2026-08-30-2026-11-27/pdf/download"
                    "?key=report-u0001-2026-08-30-2026-11-27.pdf&expires=1795900000&sig=...",
                    "expires_at": "2026-11-28T12:05:00Z",
                }
            ]
        }
    )

    url: str
    expires_at: datetime


class KindDoc(BaseModel):
    """A report kind this service runs (`POST /reports` with `"kind": name`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "transactions-csv",
                    "title": "Transactions (CSV)",
                    "description": "Every transaction of a date range, one row each",
                    "format": "csv",
                    "content_type": "text/csv",
                    "default": False,
                    "params": {"type": "object", "properties": {}},
                }
            ]
        }
    )

    name: str
    title: str
    description: str
    format: str
    content_type: str
    default: bool = Field(description="The kind a request that names none gets")
    params: dict[str, Any] = Field(description="The parameters' JSON Schema")


class KindList(BaseModel):
    kinds: list[KindDoc]
