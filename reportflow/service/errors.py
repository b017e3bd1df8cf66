"""What a user is told when a report fails: a stable code and a sentence.

The failure Temporal records says what happened for operators: the mail
server's host and port, its reply, a stack. Users (the status document, the
page, webhooks) get the code and the sentence below instead; operators read the
full reason in `GET /admin/reports?status=failed` (admin token), `reportflow
dlq list`, the Temporal Web UI and the worker's log. Codes are part of the API:
add new ones, never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportflow.core.codec import UNENCRYPTED_ERROR
from reportflow.models import (
    INVALID_RANGE,
    NO_EMAIL_ADDRESS,
    PDF_MISSING,
    SMTP_REJECTED,
    SMTP_UNAVAILABLE,
    UNKNOWN_USER,
)


@dataclass(frozen=True)
class UserError:
    code: str
    message: str


_BY_TYPE: dict[str, UserError] = {
    UNKNOWN_USER: UserError("unknown_user", "this account has no data to report on"),
    NO_EMAIL_ADDRESS: UserError(
        "no_email_address",
        "your account has no email address to send the report to; add one, "
        "then ask for the report again",
    ),
    INVALID_RANGE: UserError(
        "invalid_range",
        "the date range cannot be reported on; choose at most 366 days ending today or earlier",
    ),
    SMTP_REJECTED: UserError(
        "email_rejected",
        "the mail server refused to deliver the report; check your email address, "
        "then ask for the report again",
    ),
    SMTP_UNAVAILABLE: UserError(
        "email_unavailable",
        "the report could not be emailed: the mail service was unavailable; try again later",
    ),
    PDF_MISSING: UserError(
        "pdf_missing", "the report's PDF was lost before it was sent; ask for the report again"
    ),
    "ChromiumSandboxUnavailable": UserError(
        "render_unavailable",
        "the report could not be printed right now; the operators can see why, try again later",
    ),
    UNENCRYPTED_ERROR: UserError(
        "not_started_by_reportflow",
        "this report was not asked for through reportflow and was refused; ask for it again",
    ),
    "Terminated": UserError(
        "terminated", "an operator stopped this report; ask for it again or contact support"
    ),
    "TimedOut": UserError("timed_out", "the report took too long and was stopped; try again"),
    "Cancelled": UserError("cancelled", "the report was cancelled; no email was sent"),
}
INTERNAL = UserError(
    "internal_error", "the report could not be produced; the operators can see why, try again"
)

# While a step is retried: what is being tried again, never the server's reply.
_RETRYING = {
    "query": "reading your transactions failed; trying again",
    "render": "printing the PDF failed; trying again",
    "send_email": "sending the email failed; trying again",
}


def user_error(error_type: str | None) -> UserError:
    return _BY_TYPE.get(error_type or "", INTERNAL)


def retry_sentence(activity: str) -> str:
    return _RETRYING.get(activity, "a step failed; trying again")


def public_error(raw: dict[str, str]) -> dict[str, str]:
    """A recorded failure ({type, message, stage?}) as a user may see it."""
    told = user_error(raw.get("type"))
    public = {"type": raw.get("type") or "Unknown", "code": told.code, "message": told.message}
    if raw.get("stage"):
        public["stage"] = raw["stage"]
    return public
