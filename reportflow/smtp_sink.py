"""The built-in SMTP sink of `reportflow dev`: accepts every message and keeps
it under `var/outbox/` (one .eml file each), so a new user sees the email and
its PDF without any mail server or mail client."""

from __future__ import annotations

import logging
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)


class OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        # One clock for the second and its fraction, so names sort as messages came
        # (a monotonic fraction wraps at its own moment, not at the wall clock's second).
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
        name = f"{stamp}-{now % 10**9:09d}.eml"
        (self.outbox / name).write_bytes(content)
        log.info("sink received mail to %s: %s", ", ".join(envelope.rcpt_tos), message["Subject"])
        return "250 Message accepted for delivery"


def start_sink(host: str, port: int, outbox: Path) -> Controller:
    controller = Controller(OutboxHandler(outbox), hostname=host, port=port)
    controller.start()
    return controller


def list_outbox(outbox: Path) -> list[dict[str, Any]]:
    """The kept messages, newest first: file, recipients, subject, time, attachments."""
    items = []
    for path in sorted(outbox.glob("*.eml"), reverse=True):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        items.append(
            {
                "file": path.name,
                "to": str(message["To"]),
                "subject": str(message["Subject"]),
                "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(path.stat().st_mtime)),
                "message_id": str(message["Message-ID"]),
                "attachments": [part.get_filename() for part in message.iter_attachments()],
            }
        )
    return items
