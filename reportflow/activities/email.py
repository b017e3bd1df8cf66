"""The email step: one message with the PDF attached, sent at most once per run.

Idempotency: the Message-ID is derived from the report and run, and a row in
`deliveries` is checked before sending and written after. A retry after a
successful send finds the row and sends nothing. The window that remains (the
server accepted the message but the reply or the ledger write was lost) can
repeat one message, and it carries the same Message-ID, so mail clients that
de-duplicate on it show one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError

from reportflow.db import deliveries, users
from reportflow.mailer import Mailer
from reportflow.models import (
    NO_EMAIL_ADDRESS,
    PDF_MISSING,
    UNKNOWN_USER,
    EmailInput,
    EmailResult,
)
from reportflow.store import ReportStore

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


async def send_report_email(
    *,
    engine: AsyncEngine,
    mailer: Mailer,
    store: ReportStore,
    data: EmailInput,
    run_id: str,
) -> EmailResult:
    delivery_key = f"{data.report_id}/{run_id}"
    async with engine.connect() as conn:
        sent = (
            await conn.execute(
                select(deliveries.c.message_id, deliveries.c.recipients).where(
                    deliveries.c.delivery_key == delivery_key
                )
            )
        ).first()
    if sent is not None:
        log.info("email already sent; not sending again", extra={"report_id": data.report_id})
        return EmailResult(
            message_id=sent.message_id, recipients=json.loads(sent.recipients), already_sent=True
        )

    address, name = await _recipient(engine, data.user_id)
    recipients = [address] + [r for r in data.extra_recipients if r != address]
    pdf = await store.get(data.pdf_key)
    if pdf is None:
        # The render step's output is gone (cleaned up or lost): retrying cannot bring it back.
        raise ApplicationError(
            f"the PDF {data.pdf_key} is missing from the report store; regenerate the report",
            type=PDF_MISSING,
            non_retryable=True,
        )
    msg_id = message_id(data.report_id, run_id, mailer.domain)
    message = build_message(
        mail_from=mailer.mail_from, to=recipients, name=name, msg_id=msg_id, data=data, pdf=pdf
    )
    await mailer.send(message)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(deliveries).values(
                    delivery_key=delivery_key,
                    report_id=data.report_id,
                    message_id=msg_id,
                    recipients=json.dumps(recipients),
                )
            )
    except IntegrityError:
        log.warning("delivery was recorded concurrently", extra={"report_id": data.report_id})
    log.info("email sent", extra={"report_id": data.report_id, "message_id": msg_id})
    return EmailResult(message_id=msg_id, recipients=recipients)
