"""The email step: one message with the PDF attached, sent at most once per run.

Idempotency rests on a claim written *before* the SMTP transaction. The
`deliveries` row for (report, run) is inserted as `claimed` with a lease, the
message goes out under a deterministic Message-ID, then the row is marked
`sent`. A later attempt that finds:

- `sent` returns the recorded result and sends nothing;
- a live claim fails with the retryable EmailInFlight, asking to be retried
  when the lease ends (another attempt may be mid-send right now);
- an expired claim takes it over and sends.

The SMTP transaction has one deadline shorter than the attempt's timeout, and
the lease outlives the attempt, so a live claim always means "maybe sending"
and an expired one "certainly not sending any more".

The server's 250 ends the send: nothing after it (QUIT, the ledger) can fail
the step or release the claim. Right after the 250 the attempt records it in
the ledger; if the ledger has not taken it within LEDGER_GRACE_SECONDS, the
attempt heartbeats its result to Temporal, a second record beside the ledger: a
retry reads it from its heartbeat details and returns it without touching the
database, so a database held past the attempt's timeout does not make a second
email. (It is the attempt's first heartbeat, which the SDK sends at once.) A
ledger that answers in time costs Temporal nothing: no heartbeat, no action.
Only losing the database and Temporal at that same moment leaves a retry to
send again.

One window remains: the server accepted the message but its 250 never reached
the sender. The sender cannot tell delivered from lost, so a later attempt
sends again, with the same Message-ID, which mail clients and relays use to
drop the copy. Recipients the server refused inside an accepted transaction
are in the result's `refused`, not in its `recipients`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError

from reportflow.activities.email_file import EmailFiles, kind_message
from reportflow.core.db import deliveries, users
from reportflow.core.mailer import Accepted, Mailer
from reportflow.core.store import ReportStore
from reportflow.models import (
    DEFAULT_KIND,
    EMAIL_IN_FLIGHT,
    NO_EMAIL_ADDRESS,
    PDF_MISSING,
    SMTP_UNAVAILABLE,
    UNKNOWN_USER,
    EmailInput,
    EmailResult,
    RefusedRecipient,
)

log = logging.getLogger(__name__)


def message_id(report_id: str, run_id: str, domain: str) -> str:
    digest = hashlib.sha256(f"{report_id}/{run_id}".encode()).hexdigest()[:16]
    return f"<{report_id}.{digest}@{domain}>"


async def _recipient(engine: AsyncEngine, user_id: str) -> tuple[str, str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(users.c.email, users.c.name).where(users.c.id == user_id))
        ).first()
    if row is None:
        raise ApplicationError(
            f"user {user_id} does not exist", type=UNKNOWN_USER, non_retryable=True
        )
    if not row.email:
        raise ApplicationError(
            f"user {user_id} has no email address; add one and redrive the report",
            type=NO_EMAIL_ADDRESS,
            non_retryable=True,
        )
    return row.email, row.name


def build_message(
    *, mail_from: str, to: list[str], name: str, msg_id: str, data: EmailInput, pdf: bytes
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = ", ".join([formataddr((name, to[0])), *to[1:]])
    message["Subject"] = f"Your transaction report {data.start} to {data.end}"
    message["Message-ID"] = msg_id
    message["Date"] = formatdate(usegmt=True)
    message.set_content(
        f"Hello {name},\n\n"
        f"your transaction report for {data.start} to {data.end} is attached as a PDF.\n\n"
        f"Report ID: {data.report_id}\n"
    )
    message.add_attachment(
        pdf, maintype="application", subtype="pdf", filename=f"{data.report_id}.pdf"
    )
    return message


@dataclass(frozen=True)
class Limits:
    """Deadlines of one email attempt, from its start_to_close_timeout."""

    send_until: float  # event-loop time by which the SMTP transaction has ended
    lease_seconds: float  # how long a claim keeps other attempts from sending

    @classmethod
    def for_attempt(cls, start_to_close_seconds: float) -> Limits:
        # The send ends well inside the attempt; the claim outlives the attempt,
        # so no attempt can take over a claim whose send may still be running.
        loop = asyncio.get_running_loop()
        return cls(
            send_until=loop.time() + max(1.0, 0.75 * start_to_close_seconds),
            lease_seconds=1.25 * start_to_close_seconds,
        )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _recorded(row: Any) -> EmailResult:
    # A claim (or a row sent before refusals were kept) holds the plain list of
    # recipients; a sent row holds {"accepted": [...], "refused": [...]}.
    recipients = json.loads(row.recipients)
    if isinstance(recipients, list):
        return EmailResult(message_id=row.message_id, recipients=recipients, already_sent=True)
    return EmailResult(
        message_id=row.message_id,
        recipients=recipients["accepted"],
        already_sent=True,
        refused=[RefusedRecipient(**r) for r in recipients["refused"]],
    )


def _ledger_recipients(result: EmailResult) -> str:
    refused = [dataclasses.asdict(r) for r in result.refused]
    return json.dumps({"accepted": result.recipients, "refused": refused})


# The heartbeat detail an attempt records right after the server's 250.
_ACCEPTED = "accepted"


def heartbeat_detail(result: EmailResult) -> dict[str, Any]:
    return {_ACCEPTED: dataclasses.asdict(result)}


def sent_in_earlier_attempt(details: Sequence[Any], report_id: str) -> EmailResult | None:
    """The result an earlier attempt of this step heartbeated after its 250, if any."""
    for detail in details:
        if not (isinstance(detail, dict) and isinstance(detail.get(_ACCEPTED), dict)):
            continue
        sent = detail[_ACCEPTED]
        try:
            return EmailResult(
                message_id=sent["message_id"],
                recipients=list(sent["recipients"]),
                already_sent=True,
                refused=[RefusedRecipient(**r) for r in sent.get("refused", [])],
            )
        except (KeyError, TypeError):
            # Not ours to trust: the ledger decides, as it would without a heartbeat.
            log.warning(
                "an earlier attempt's heartbeat is not a sent email: %r",
                detail,
                extra={"report_id": report_id},
            )
    return None


async def _claim(
    engine: AsyncEngine,
    *,
    key: str,
    report_id: str,
    msg_id: str,
    recipients: list[str],
    lease: float,
) -> str | EmailResult:
    """Claim the run's delivery; the claim's ID, or the recorded result if it was sent.

    Raises the retryable EmailInFlight while another attempt holds a live claim.
    """
    claim_id = uuid.uuid4().hex
    for _ in range(3):
        now = datetime.now(UTC)
        claim = {
            "message_id": msg_id,
            "recipients": json.dumps(recipients),
            "status": "claimed",
            "claim_id": claim_id,
            "claimed_until": now + timedelta(seconds=lease),
        }
        try:
            async with engine.begin() as conn:
                row = (
                    await conn.execute(select(deliveries).where(deliveries.c.delivery_key == key))
                ).first()
                if row is None:
                    await conn.execute(
                        insert(deliveries).values(delivery_key=key, report_id=report_id, **claim)
                    )
                    return claim_id
                if row.status == "sent":
                    return _recorded(row)
                until = _utc(row.claimed_until)
                if until > now:
                    wait = until - now
                    raise ApplicationError(
                        f"another attempt is sending this email (its claim ends in "
                        f"{wait.total_seconds():.0f} s); trying again once it has finished "
                        "or expired",
                        type=EMAIL_IN_FLIGHT,
                        next_retry_delay=wait + timedelta(seconds=0.5),
                    )
                # The claim expired, so its attempt can no longer be sending: take it
                # over, unless another attempt took it first.
                taken = await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.delivery_key == key, deliveries.c.claim_id == row.claim_id)
                    .values(**claim)
                )
                if taken.rowcount == 1:
                    break
        except IntegrityError:
            pass  # another attempt inserted its claim first: look again
    else:
        raise ApplicationError(
            "another attempt claimed this email at the same moment; trying again",
            type=EMAIL_IN_FLIGHT,
        )
    log.warning(
        "taking over an expired email claim: the earlier attempt may or may not have sent",
        extra={"report_id": report_id},
    )
    return claim_id


async def _release(engine: AsyncEngine, *, key: str, claim_id: str) -> None:
    """End this attempt's claim early: its SMTP transaction failed or was aborted, so
    nothing is being sent under it and the next attempt may send at once."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_key == key, deliveries.c.claim_id == claim_id)
                .values(claimed_until=datetime.now(UTC))
            )
    except SQLAlchemyError:
        log.warning("could not release the email claim; it expires by itself", exc_info=True)


# How long the ledger has to record a 250 before the attempt heartbeats it too.
LEDGER_GRACE_SECONDS = 1.0


async def _record_sent(
    engine: AsyncEngine,
    *,
    key: str,
    claim_id: str,
    result: EmailResult,
    report_id: str,
    heartbeat: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Record the 250 in the ledger; heartbeat it as well if the ledger is slow or
    refuses (the second record a retry reads, see the module's docstring)."""
    ledger = asyncio.ensure_future(
        _mark_sent(engine, key=key, claim_id=claim_id, result=result, report_id=report_id)
    )
    await asyncio.wait([ledger], timeout=LEDGER_GRACE_SECONDS)
    if heartbeat is not None and not (ledger.done() and ledger.result()):
        try:
            heartbeat(heartbeat_detail(result))
        except Exception:
            # The ledger may still record the send; only the second record is lost.
            log.warning(
                "could not heartbeat the sent email", exc_info=True, extra={"report_id": report_id}
            )
    await ledger


async def _mark_sent(
    engine: AsyncEngine, *, key: str, claim_id: str, result: EmailResult, report_id: str
) -> bool:
    """Record the 250; a few quick tries, since a lost record means a second email
    once the claim expires (if this attempt's result and heartbeat are lost as well).
    Whether it was recorded."""
    for delay in (0.0, 0.2, 0.5, 1.0):
        await asyncio.sleep(delay)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.delivery_key == key, deliveries.c.claim_id == claim_id)
                    .values(
                        status="sent",
                        sent_at=datetime.now(UTC),
                        recipients=_ledger_recipients(result),
                    )
                )
            return True
        except (SQLAlchemyError, OSError, TimeoutError) as err:
            # A driver's own timeout or a dropped socket may surface unwrapped; the
            # email is sent either way, so every failure here is only logged.
            log.warning(
                "could not record the sent email yet: %s", err, extra={"report_id": report_id}
            )
    log.error(
        "the email was sent but could not be recorded; the run's result still says so",
        extra={"report_id": report_id},
    )
    return False


async def send_report_email(
    *,
    engine: AsyncEngine,
    mailer: Mailer,
    store: ReportStore,
    data: EmailInput,
    run_id: str,
    limits: Limits,
    files: EmailFiles | None = None,
    earlier: EmailResult | None = None,
    heartbeat: Callable[[dict[str, Any]], None] | None = None,
) -> EmailResult:
    """Send the run's email once. `earlier`: what an earlier attempt heartbeated
    after its 250 (`sent_in_earlier_attempt`); `heartbeat` records this one's."""
    if earlier is not None:
        log.info(
            "the server accepted this email in an earlier attempt (recorded in its "
            "heartbeat); not sending again",
            extra={"report_id": data.report_id, "message_id": earlier.message_id},
        )
        return earlier
    files = files or EmailFiles()
    key = f"{data.report_id}/{run_id}"
    address, name = await _recipient(engine, data.user_id)
    recipients = [address] + [r for r in data.extra_recipients if r != address]
    msg_id = message_id(data.report_id, run_id, mailer.domain)
    claimed = await _claim(
        engine,
        key=key,
        report_id=data.report_id,
        msg_id=msg_id,
        recipients=recipients,
        lease=limits.lease_seconds,
    )
    if isinstance(claimed, EmailResult):
        log.info("email already sent; not sending again", extra={"report_id": data.report_id})
        return claimed

    if data.kind != DEFAULT_KIND:
        message = await kind_message(
            files=files, store=store, mail_from=mailer.mail_from, to=recipients, name=name,
            msg_id=msg_id, data=data,
        )  # fmt: skip
    elif (pdf := await store.get(data.pdf_key)) is None:
        # The render step's output is gone (cleaned up or lost): retrying cannot bring it back.
        raise ApplicationError(
            f"the PDF {data.pdf_key} is missing from the report store; regenerate the report",
            type=PDF_MISSING,
            non_retryable=True,
        )
    else:
        message = build_message(
            mail_from=mailer.mail_from, to=recipients, name=name, msg_id=msg_id, data=data, pdf=pdf
        )

    recording: list[asyncio.Future[None]] = []

    def on_accepted(accepted: Accepted) -> None:
        # Recorded while QUIT goes on: nothing after the 250 waits for the server.
        recording.append(
            asyncio.ensure_future(
                _record_sent(
                    engine,
                    key=key,
                    claim_id=claimed,
                    result=_sent(msg_id, recipients, accepted),
                    report_id=data.report_id,
                    heartbeat=heartbeat,
                )
            )
        )

    try:
        accepted = await mailer.send(message, deadline=limits.send_until, on_accepted=on_accepted)
    except TimeoutError as err:
        await _release(engine, key=key, claim_id=claimed)
        raise ApplicationError(
            "the mail server did not finish the transaction in time; trying again",
            type=SMTP_UNAVAILABLE,
        ) from err
    except ApplicationError:
        await _release(engine, key=key, claim_id=claimed)
        raise
    # From here on the email is sent: nothing below may fail the step.
    result = _sent(msg_id, recipients, accepted)
    extra = {"report_id": data.report_id, "message_id": msg_id}
    if accepted.quit_error:
        log.info(
            "the mail server accepted the email; QUIT then failed: %s",
            accepted.quit_error,
            extra=extra,
        )
    for refused in result.refused:
        log.warning(
            "the mail server refused %s (%d %s) and accepted the others",
            refused.address,
            refused.code,
            refused.message,
            extra=extra,
        )
    await asyncio.gather(*recording)
    log.info("email sent", extra=extra)
    return result


def _sent(msg_id: str, recipients: list[str], accepted: Accepted) -> EmailResult:
    refused = {r.address for r in accepted.refused}
    return EmailResult(
        message_id=msg_id,
        recipients=[r for r in recipients if r not in refused],
        refused=accepted.refused,
    )
