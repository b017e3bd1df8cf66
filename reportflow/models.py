"""Models shared by the API, the worker, the workflow and the activities.

Everything that crosses Temporal is a dataclass with one input and one result
per workflow/activity, so fields can be added later without breaking histories.
Dates travel as ISO strings (YYYY-MM-DD); money as integer cents.

No `from __future__ import annotations` here: the SDK reads each dataclass's type
hints every time it decodes one, and string annotations are compiled again on each
read (about a third of the worker's decoding time).
"""

import re
from dataclasses import dataclass, field

TASK_QUEUE = "reports"
WORKFLOW_TYPE = "GenerateReport"
SEARCH_ATTRIBUTE_USER = "ReportUserId"
# The kind a request names when it names none (reportflow.kinds): the PDF report.
DEFAULT_KIND = "transactions"
# A kind's format (its file's extension) and the type its file is served as.
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "json": "application/json",
    "html": "text/html",
    "txt": "text/plain",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def email_queue(task_queue: str) -> str:
    """The email step's task queue, rate-limited across workers (EMAIL_RATE_PER_SECOND)."""
    return f"{task_queue}-email"


# Stages in order, with the progress (percent) a report has when it enters each.
STAGES: dict[str, int] = {
    "queued": 0,
    "querying": 10,
    "rendering": 40,
    "emailing": 80,
    "done": 100,
}

# Error types (ApplicationError.type) that retrying cannot fix.
UNKNOWN_USER = "UnknownUser"
NO_EMAIL_ADDRESS = "NoEmailAddress"
INVALID_RANGE = "InvalidRange"
SMTP_REJECTED = "SmtpRejected"
SMTP_UNAVAILABLE = "SmtpUnavailable"  # retried: a 4xx reply, a refused or dropped connection
PDF_MISSING = "PdfMissing"
# Retried: another attempt holds a live claim on this run's email (it may be sending now).
EMAIL_IN_FLIGHT = "EmailInFlight"
NON_RETRYABLE_ERRORS = [UNKNOWN_USER, NO_EMAIL_ADDRESS, INVALID_RANGE, SMTP_REJECTED, PDF_MISSING]


@dataclass
class Backoff:
    """One activity's retry schedule: initial * coefficient**n, capped, finite.

    With the defaults the tries land at 0, 2, 6, 14, 30, 62 s (6 attempts, ~1 min).
    """

    initial_seconds: float = 2.0
    coefficient: float = 2.0
    maximum_seconds: float = 120.0
    maximum_attempts: int = 6


def webhook_backoff() -> Backoff:
    """Webhook deliveries: 5 s, 10 s, ... capped at 30 min, 20 tries: about 6 hours."""
    return Backoff(initial_seconds=5.0, coefficient=2.0, maximum_seconds=1800.0,
                   maximum_attempts=20)  # fmt: skip


@dataclass
class RetrySchedule:
    query: Backoff = field(default_factory=Backoff)
    render: Backoff = field(default_factory=Backoff)
    email: Backoff = field(default_factory=Backoff)
    webhook: Backoff = field(default_factory=webhook_backoff)


@dataclass
class Timeouts:
    """Per-attempt limits (seconds). A render that stops heartbeating for
    `render_heartbeat` (say, its worker was killed) is retried elsewhere."""

    query: float = 60.0
    render: float = 120.0
    render_heartbeat: float = 20.0
    email: float = 60.0
    # One webhook delivery attempt; a worker killed mid-delivery is retried after it.
    webhook: float = 30.0


@dataclass
class GenerateReportInput:
    report_id: str
    user_id: str
    start: str
    end: str
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Recipients besides the owner, carried over when a failed report is redriven.
    recipients: list[str] = field(default_factory=list)
    # The report kind (reportflow.kinds) and its parameters as canonical JSON. Runs
    # started before kinds existed decode with the defaults: the transactions PDF.
    kind: str = DEFAULT_KIND
    params: str = ""


@dataclass
class QueryInput:
    report_id: str
    user_id: str
    start: str
    end: str


@dataclass
class CategoryTotal:
    category: str
    spent_cents: int
    count: int


@dataclass
class WeekTotal:
    week_start: str
    in_cents: int
    out_cents: int


@dataclass
class MerchantTotal:
    merchant: str
    spent_cents: int
    count: int


@dataclass
class TransactionRow:
    posted_at: str
    merchant: str
    category: str
    amount_cents: int
    currency: str


@dataclass
class CurrencyTotal:
    """Money in, out and net of one currency's transactions: amounts in two
    currencies are never added up."""

    currency: str
    transaction_count: int
    money_in_cents: int
    money_out_cents: int
    net_cents: int


@dataclass
class ReportData:
    """The aggregates of one user's range: small and bounded, so it may travel in history.

    `totals` has one entry per currency in the range, the commonest first (empty in
    data recorded before it existed). `currency` is that first one; the top-level
    money figures, the categories, the weeks and the merchants are in it alone;
    `transaction_count` counts every currency."""

    report_id: str
    user_id: str
    user_name: str
    start: str
    end: str
    currency: str
    transaction_count: int
    money_in_cents: int
    money_out_cents: int
    net_cents: int
    by_category: list[CategoryTotal] = field(default_factory=list)
    by_week: list[WeekTotal] = field(default_factory=list)
    top_merchants: list[MerchantTotal] = field(default_factory=list)
    largest: list[TransactionRow] = field(default_factory=list)
    totals: list[CurrencyTotal] = field(default_factory=list)


@dataclass
class RenderInput:
    data: ReportData


@dataclass
class KindQueryInput:
    """A kind's query step: the kind by name only (the workflow never imports a kind)."""

    report_id: str
    user_id: str
    kind: str
    params: str


@dataclass
class KindData:
    """A kind's query result: inline JSON when small, else a claim check in the store."""

    kind: str
    user_name: str
    json: str | None = None
    key: str | None = None
    bytes: int = 0


@dataclass
class KindRenderInput:
    report_id: str
    user_id: str
    kind: str
    params: str
    data: KindData


@dataclass
class RenderResult:
    """Claim check: the file itself stays in the report store under `key`."""

    key: str
    pages: int
    bytes: int
    format: str = "pdf"
    content_type: str = "application/pdf"


@dataclass
class EmailInput:
    report_id: str
    user_id: str
    pdf_key: str
    start: str
    end: str
    extra_recipients: list[str] = field(default_factory=list)
    # A kind's file (the transactions PDF when left as they are).
    kind: str = DEFAULT_KIND
    title: str = ""
    format: str = "pdf"
    content_type: str = "application/pdf"
    bytes: int = 0


@dataclass
class RefusedRecipient:
    """A recipient the mail server refused inside a transaction it accepted for others."""

    address: str
    code: int
    message: str


@dataclass
class EmailResult:
    message_id: str
    recipients: list[str]  # the ones the server accepted
    already_sent: bool = False
    refused: list[RefusedRecipient] = field(default_factory=list)


@dataclass
class CleanupInput:
    report_id: str
    pdf_key: str | None = None


@dataclass
class ExpireInput:
    """Remove PDFs older than `retention_days` (the worker's REPORT_RETENTION_DAYS when None)."""

    retention_days: float | None = None


@dataclass
class ExpireResult:
    removed: int


@dataclass
class ReportResult:
    pdf_key: str  # the file's key, whatever its format
    pages: int
    bytes: int
    emailed_to: list[str]
    message_id: str
    format: str = "pdf"
    content_type: str = "application/pdf"
    refused: list[RefusedRecipient] = field(default_factory=list)


# `add_recipient`: at most this many extra recipients per report, each a plain
# address (local@domain.tld: no display name, no spaces, no list separators).
MAX_EXTRA_RECIPIENTS = 5
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")


@dataclass
class Progress:
    """What the `progress` query returns and what the memo carries."""

    stage: str = "queued"
    progress: int = 0
    updated_at: str | None = None
    recipients: list[str] = field(default_factory=list)

    def recipient_refusal(self, address: str) -> str | None:
        """Why `address` may not be added as a recipient now; None when it may."""
        if len(address) > 254 or not _ADDRESS.fullmatch(address):
            return "not a well-formed address (local@domain.tld)"
        if self.stage in {"emailing", "done"}:
            return "arrived after the email step"
        if address not in self.recipients and len(self.recipients) >= MAX_EXTRA_RECIPIENTS:
            return f"the report already has {MAX_EXTRA_RECIPIENTS} extra recipients"
        return None


SCHEDULED_WORKFLOW_TYPE = "ScheduledReport"


@dataclass
class ScheduledReportInput:
    """What a user's Schedule runs: the report of the period before each run."""

    user_id: str
    every: str  # week | month
    timezone: str
    # The report kind and its parameters (JSON); the run's period fills start/end.
    kind: str = DEFAULT_KIND
    params: str = ""


@dataclass
class StartScheduledInput:
    user_id: str
    every: str
    timezone: str
    # The run's nominal time (the Schedule's TemporalScheduledStartTime), ISO 8601.
    nominal_time: str
    kind: str = DEFAULT_KIND
    params: str = ""


@dataclass
class ScheduledReportResult:
    report_id: str
    started: bool
    start: str
    end: str


DELIVER_WEBHOOKS_WORKFLOW_TYPE = "DeliverWebhooks"


@dataclass
class WebhookEvent:
    """A report's outcome, announced to each of its user's webhook endpoints."""

    report_id: str
    run_id: str
    user_id: str
    outcome: str  # completed | failed | cancelled
    start: str
    end: str
    occurred_at: str
    error: dict[str, str] | None = None
    retry: Backoff = field(default_factory=webhook_backoff)
    attempt_seconds: float = 30.0
    kind: str = DEFAULT_KIND
    refused: list[RefusedRecipient] = field(default_factory=list)  # of a completed report

    @property
    def event_id(self) -> str:
        """The `webhook-id`: the same on every retry, so receivers can deduplicate."""
        return f"{self.report_id}.{self.outcome}.{self.run_id}"

    @property
    def workflow_id(self) -> str:
        """DeliverWebhooks' workflow ID: one delivery per outcome of each run."""
        return f"{WEBHOOKS_PREFIX}{self.report_id}-{self.outcome}-{self.run_id}"


WEBHOOKS_PREFIX = "webhooks-"
_WEBHOOKS_ID = re.compile(
    rf"^{WEBHOOKS_PREFIX}(.+)-(?:completed|failed|cancelled)-[0-9a-f-]{{36}}$"
)


def report_id_of(workflow_id: str) -> str:
    """The report a workflow works for: its own ID, or the report a webhook delivery announces."""
    match = _WEBHOOKS_ID.match(workflow_id)
    return match.group(1) if match else workflow_id


@dataclass
class WebhookTargetsInput:
    user_id: str


@dataclass
class WebhookTargets:
    endpoint_ids: list[str]


@dataclass
class WebhookDeliveryInput:
    endpoint_id: str
    event: WebhookEvent


@dataclass
class WebhookDeliveryResult:
    endpoint_id: str
    outcome: str  # delivered | disabled | gone
    status_code: int | None = None


@dataclass
class WebhookDeliveries:
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


# Retried (no history grows) while the user has MAX_RUNNING_REPORTS_PER_USER running.
USER_AT_CAPACITY = "UserAtCapacity"


@dataclass
class SlotInput:
    user_id: str
    report_id: str
    run_id: str


@dataclass
class SlotGrant:
    """A slot is the run's; and whether its user has webhook endpoints (read as the
    run starts, so the report of a user without any starts no delivery child)."""

    webhooks: bool = True


# The `cancel` Workflow Update the service sends; its validator's refusal (type and sentence).
CANCEL_UPDATE = "cancel"
TOO_LATE_TO_CANCEL = "TooLateToCancel"
TOO_LATE_TO_CANCEL_MESSAGE = (
    "the email is already being sent, so it is too late to cancel; the report will complete"
)
