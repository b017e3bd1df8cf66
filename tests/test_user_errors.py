"""A user is told a stable code and a sentence; the failure's own text (hosts,
ports, server replies) never reaches the status document or a webhook."""

from __future__ import annotations

import json

from reportflow.models import SMTP_REJECTED, SMTP_UNAVAILABLE, WebhookEvent
from reportflow.service.errors import INTERNAL, public_error, user_error
from reportflow.service.webhooks import event_body

RAW = {
    "type": SMTP_UNAVAILABLE,
    "message": "cannot reach the mail server at smtp.internal.corp:2525: "
    "[Errno 111] Connect call failed ('10.1.2.3', 2525)",
    "retry_state": "MAXIMUM_ATTEMPTS_REACHED",
    "stage": "emailing",
}


def test_a_webhooks_error_is_a_code_and_a_sentence() -> None:
    event = WebhookEvent(
        report_id="report-u1-2026-01-01-2026-01-31",
        run_id="run",
        user_id="u1",
        outcome="failed",
        start="2026-01-01",
        end="2026-01-31",
        occurred_at="2026-02-01T00:00:00Z",
        error=RAW,
    )
    body = event_body(event)
    error = json.loads(body)["data"]["error"]
    assert error == {
        "type": SMTP_UNAVAILABLE,
        "code": "email_unavailable",
        "message": user_error(SMTP_UNAVAILABLE).message,
        "stage": "emailing",
    }
    for secret in ("smtp.internal.corp", "2525", "10.1.2.3", "Errno", "MAXIMUM_ATTEMPTS"):
        assert secret not in body


def test_codes_are_stable_and_unknown_types_are_internal() -> None:
    assert user_error(SMTP_REJECTED).code == "email_rejected"
    assert user_error("SomethingNew") == INTERNAL
    assert public_error({"type": "", "message": "Traceback ..."})["code"] == "internal_error"
