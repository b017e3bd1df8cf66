"""A real SMTP server (aiosmtpd) in the test process that records what it gets
and can be told to refuse for a while, the way a real relay misbehaves."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    rcpt_tos: list[str]
    message: EmailMessage
    at: float


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    refuse_count: int = 0
    refuse_reply: str = "421 4.3.2 Service not available, try again later"
    drop_count: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts.append(time.monotonic())
        if self.refuse_count > 0:
            self.refuse_count -= 1
            return self.refuse_reply
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(list(envelope.rcpt_tos), message, time.monotonic()))
        if self.drop_count > 0:
            # The message is delivered, but the client never hears so: the
            # connection dies between the end of DATA and the server's reply.
            self.drop_count -= 1
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
        return "250 OK"


class SmtpServer:
    def __init__(self, host: str, port: int) -> None:
        self.handler = RecordingHandler()
        self.controller = Controller(self.handler, hostname=host, port=port)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def refuse(self, times: int, reply: str = "421 4.3.2 Service not available") -> None:
        """Answer the next `times` messages with `reply` (a 4xx is temporary, a 5xx not)."""
        self.handler.refuse_count = times
        self.handler.refuse_reply = reply

    def drop_after_data(self, times: int) -> None:
        """Accept the next `times` messages but drop the connection before replying."""
        self.handler.drop_count = times

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.handler.received if address in r.rcpt_tos]

    async def wait_for_message(self, address: str, timeout: float = 30.0) -> EmailMessage:
        async with asyncio.timeout(timeout):
            while not self.messages_to(address):
                await asyncio.sleep(0.05)
        return self.messages_to(address)[0]
