"""The documents every part of reportflow shares: the API answers them, the service
builds them, the CLI and the public client read them, the workers' inputs follow
their range rules. Also the schedule and webhook documents with their rules
(weekday or day of the month, time zone, backfill; an http(s) URL).

It sits at the bottom with `models.py` (see docs/layout.md): it imports nothing
of reportflow's but `models`, so the service, the CLI and the workers need not
reach up into `reportflow.api` for a shape. The HTTP-only models (problem
bodies, the PDF link) stay in `api/schemas.py`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from reportflow.models import DEFAULT_KIND

# The range rules of a report over dates (the `transactions` kinds' parameters).
DEFAULT_DAYS = 90
MAX_DAYS = 366


def today() -> date:
    return datetime.now(UTC).date()


class DateRange(BaseModel):
    """Dates are inclusive; both default to the last 90 days ending today (UTC)."""

    model_config = ConfigDict(extra="forbid")

    start: date | None = Field(None, description="First day, YYYY-MM-DD")
    end: date | None = Field(None, description="Last day, YYYY-MM-DD; not after today")

    @model_validator(mode="after")
    def _check_range(self) -> Any:
        now = today()
        if self.end is None:
            self.end = now
        if self.start is None:
            self.start = self.end - timedelta(days=DEFAULT_DAYS - 1)
        if self.end > now:
            raise ValueError(
                f"end {self.end} is in the future; the last day a report can cover is today, {now}"
            )
        if self.start > self.end:
            raise ValueError(
                f"start {self.start} is after end {self.end}; swap them or pick an earlier start"
            )
        days = (self.end - self.start).days + 1
        if days > MAX_DAYS:
            raise ValueError(
                f"the range covers {days} days; a report covers at most {MAX_DAYS}, "
                "so split it into several reports"
            )
        return self

    def dates(self) -> tuple[date, date]:
        assert self.start is not None and self.end is not None
        return self.start, self.end


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


# --- schedules: when a report is sent, and the document of one ---

Every = Literal["week", "month"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# Days 29-31 do not exist in every month; a schedule on them would skip months.
LAST_MONTH_DAY = 28
MAX_BACKFILL = 12


class ScheduleRequest(BaseModel):
    """When a report is sent: weekly on a weekday, or monthly on a day of the month."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"every": "week", "day": "monday", "time": "06:00", "timezone": "Europe/Berlin"},
                {"every": "month", "day": 1, "time": "07:30", "timezone": "UTC"},
            ]
        },
    )

    every: Every = Field(description="week: the previous Monday-Sunday week; month: last month")
    day: str | int = Field(description="a weekday name (week) or a day 1-28 (month)")
    time: str = Field("06:00", description="local time HH:MM (24 h)")
    timezone: str = Field("UTC", description="an IANA time zone, e.g. Europe/Berlin")
    backfill: int = Field(
        0, ge=0, le=MAX_BACKFILL, description="also send this many past periods now"
    )
    kind: str = Field(
        default=DEFAULT_KIND, max_length=40, description="the report kind (GET /kinds)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="the kind's parameters; each run's period sets its range"
    )

    @field_validator("time")
    @classmethod
    def _check_time(cls, value: str) -> str:
        hour, minute = parse_time(value)
        return f"{hour:02d}:{minute:02d}"

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_day(self) -> ScheduleRequest:
        if self.every == "week":
            name = str(self.day).strip().lower()
            if name not in WEEKDAYS:
                raise ValueError(
                    f"day {self.day!r} is not a weekday; a weekly schedule takes one of "
                    f"{', '.join(WEEKDAYS)}"
                )
            self.day = name
        else:
            try:
                number = int(self.day)
            except ValueError:
                number = 0
            if not 1 <= number <= LAST_MONTH_DAY:
                raise ValueError(
                    f"day {self.day!r} is not a day of the month from 1 to {LAST_MONTH_DAY}; "
                    "later days do not exist in every month"
                )
            self.day = number
        return self


def parse_time(value: str) -> tuple[int, int]:
    parts = value.strip().split(":")
    if len(parts) == 2 and all(p.isdigit() and len(p) == 2 for p in parts):
        hour, minute = int(parts[0]), int(parts[1])
        if hour < 24 and minute < 60:
            return hour, minute
    raise ValueError(f"time {value!r} is not a time of day; write it as HH:MM, e.g. 06:00")


class ScheduleDocument(BaseModel):
    id: str = Field(description="the Temporal Schedule ID (`temporal schedule trigger` takes it)")
    every: Every
    day: str | int
    time: str
    timezone: str
    paused: bool
    next_run_at: datetime | None = Field(None, description="the next run (UTC)")
    covers: str = Field(description="which period each run reports on")
    kind: str = DEFAULT_KIND
    params: dict[str, Any] = Field(default_factory=dict)


# --- webhooks: an endpoint to register, and the document of one ---

MAX_URL = 2000


class WebhookRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"url": "https://example.com/hooks"}]}
    )

    url: str = Field(description="an http(s) URL that receives a POST per report outcome")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if len(value) > MAX_URL or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"{value[:100]!r} is not an http(s) URL with a host, e.g. https://example.com/hooks"
            )
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError(f"{value[:100]!r} has an invalid port") from None
        return value


class WebhookDocument(BaseModel):
    id: str
    url: str
    created_at: datetime | None = None
    disabled: bool = Field(description="true once the receiver answered 410 Gone")


class CreatedWebhook(WebhookDocument):
    secret: str = Field(description="verifies deliveries' signatures; shown only now")
