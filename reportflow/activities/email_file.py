"""A report kind's file in its email: attached when small, else a signed, expiring link.

A file store cannot sign, so the link points at the API's own download route
(PUBLIC_URL), signed with SECRET_KEY as the API's `/file` links are; an S3
store presigns its own URL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from urllib.parse import urlencode

from temporalio.exceptions import ApplicationError

from reportflow.core.signing import signature
from reportflow.core.store import ReportStore
from reportflow.models import PDF_MISSING, EmailInput


@dataclass(frozen=True)
class EmailFiles:
    attach_max_bytes: int = 5 * 1024 * 1024
    link_days: float = 7.0
    public_url: str = "http://localhost:8000"
    secret: str = ""

    async def link(self, store: ReportStore, report_id: str, key: str) -> tuple[str, datetime]:
        lifetime = timedelta(days=self.link_days)
        expires = int(time.time() + lifetime.total_seconds())
        url = await store.signed_url(key, lifetime)
        if url is None:
            sig = signature(self.secret, report_id, key, expires)
            query = urlencode({"key": key, "expires": expires, "sig": sig})
            url = f"{self.public_url.rstrip('/')}/reports/{report_id}/file/download?{query}"
        return url, datetime.fromtimestamp(expires, UTC)


async def kind_message(
    *,
    files: EmailFiles,
    store: ReportStore,
    mail_from: str,
    to: list[str],
    name: str,
    msg_id: str,
    data: EmailInput,
) -> EmailMessage:
    """The email of a kind's report: the file attached, or linked past the size limit."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = ", ".join([formataddr((name, to[0])), *to[1:]])
    title = data.title or data.kind
    message["Subject"] = f"Your report: {title}"
    message["Message-ID"] = msg_id
    message["Date"] = formatdate(usegmt=True)
    filename = f"{data.report_id}.{data.format}"
    if data.bytes > files.attach_max_bytes:
        url, until = await files.link(store, data.report_id, data.pdf_key)
        message.set_content(
            f"Hello {name},\n\nyour report {title} is ready ({data.bytes:,} bytes, "
            f"too large to attach). Download it here until {until:%Y-%m-%d %H:%M} UTC:\n\n"
            f"{url}\n\nReport ID: {data.report_id}\n"
        )
        return message
    body = await store.get(data.pdf_key)
    if body is None:
        raise ApplicationError(
            f"the file {data.pdf_key} is missing from the report store; regenerate the report",
            type=PDF_MISSING,
            non_retryable=True,
        )
    message.set_content(
        f"Hello {name},\n\nyour report {title} is attached ({filename}).\n\n"
        f"Report ID: {data.report_id}\n"
    )
    maintype, _, subtype = data.content_type.partition("/")
    message.add_attachment(body, maintype=maintype, subtype=subtype, filename=filename)
    return message
