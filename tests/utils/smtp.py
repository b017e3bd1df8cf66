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
class Faults:
    """How the server misbehaves for the next messages (to one address, or any)."""

    refuse: int = 0
    reply: str = "421 4.3.2 Service not available, try again later"
    drop: int = 0
    stall: int = 0
    stall_seconds: float = 0.0
    stall_delivers_anyway: bool = False


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[float, list[str]]] = field(default_factory=list)
    # Faults per recipient address; None applies to every message. Tests share
    # one server, so a test provokes faults for its own user's address only.
    faults: dict[str | None, Faults] = field(default_factory=dict)
    in_flight: int = 0  # DATA transactions not answered yet

    def _faults_for(self, rcpt_tos: list[str]) -> Faults:
        for address in rcpt_tos:
            if address in self.faults:
                return self.faults[address]
        return self.faults.setdefault(None, Faults())

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        try:
            return await self._data(server, envelope)
        finally:
            self.in_flight -= 1

    def _accept(self, rcpt_tos: list[str], envelope: Envelope) -> None:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(rcpt_tos, message, time.monotonic()))

    async def _data(self, server: SMTP, envelope: Envelope) -> str:
        rcpt_tos = list(envelope.rcpt_tos)
        self.attempts.append((time.monotonic(), rcpt_tos))
        faults = self._faults_for(rcpt_tos)
        if faults.refuse > 0:
            faults.refuse -= 1
            return faults.reply
        if faults.stall > 0:
            # A slow server: a long pause between the end of DATA and its 250.
            # By default it commits the message only if its client is still there
            # when the pause ends; `delivers_anyway` commits first, then pauses.
            faults.stall -= 1
            if faults.stall_delivers_anyway:
                self._accept(rcpt_tos, envelope)
                await asyncio.sleep(faults.stall_seconds)
                return "250 OK"
            await asyncio.sleep(faults.stall_seconds)
            if server.transport is None or server.transport.is_closing():
                return "451 4.4.2 Client went away before the reply"
        self._accept(rcpt_tos, envelope)
        if faults.drop > 0:
            # The message is delivered, but the client never hears so: the
            # connection dies between the end of DATA and the server's reply.
            faults.drop -= 1
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

    def refuse(
        self, times: int, reply: str = "421 4.3.2 Service not available", *, to: str | None = None
    ) -> None:
        """Answer the next `times` messages (to `to`, or any) with `reply`;
        a 4xx reply is temporary, a 5xx one permanent."""
        faults = self.handler.faults.setdefault(to, Faults())
        faults.refuse, faults.reply = times, reply

    def drop_after_data(self, times: int, *, to: str | None = None) -> None:
        """Accept the next `times` messages (to `to`, or any) but drop the
        connection before replying."""
        self.handler.faults.setdefault(to, Faults()).drop = times

    def stall_after_data(
        self, times: int, seconds: float, *, to: str | None = None, delivers_anyway: bool = False
    ) -> None:
        """Pause `seconds` after the next `times` messages' DATA before replying 250.
        A message whose client hung up meanwhile is not accepted, unless
        `delivers_anyway` (a server that commits first and replies after)."""
        faults = self.handler.faults.setdefault(to, Faults())
        faults.stall, faults.stall_seconds = times, seconds
        faults.stall_delivers_anyway = delivers_anyway

    def reset(self) -> None:
        """Accept every message again."""
        self.handler.faults.clear()

    @property
    def idle(self) -> bool:
        """No message is between its DATA and the server's reply (none stalled)."""
        return self.handler.in_flight == 0

    def attempts_to(self, address: str) -> list[float]:
        """When each delivery to `address` was tried (refused ones included)."""
        return [at for at, rcpt_tos in self.handler.attempts if address in rcpt_tos]

    def messages_to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.handler.received if address in r.rcpt_tos]

    async def wait_for_message(self, address: str, timeout: float = 30.0) -> EmailMessage:
        async with asyncio.timeout(timeout):
            while not self.messages_to(address):
                await asyncio.sleep(0.05)
        return self.messages_to(address)[0]
