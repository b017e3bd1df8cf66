"""A real SMTP server (aiosmtpd) in the test process that records what it gets
and can be told to refuse for a while, the way a real relay misbehaves."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session


@dataclass
class Received:
    rcpt_tos: list[str]
    message: EmailMessage
    at: float


class ReplyGate:
    """Holds the server's 250 to one message until the test opens it (after it has,
    say, made the database unwritable). Used across the server's thread and the test's."""

    def __init__(self) -> None:
        self.reached = threading.Event()  # the message is in, its 250 not yet sent
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    async def wait_reached(self, timeout: float = 60.0) -> None:
        if not await asyncio.to_thread(self.reached.wait, timeout):
            raise AssertionError(f"no message reached the gate in {timeout} s")

    async def hold(self, timeout: float = 120.0) -> None:
        """(The server's side.) Say the message is in, then wait to be opened."""
        self.reached.set()
        await asyncio.to_thread(self._open.wait, timeout)


@dataclass
class Faults:
    """How the server misbehaves for the next messages (to one address, or any)."""

    refuse: int = 0
    reply: str = "421 4.3.2 Service not available, try again later"
    drop: int = 0
    stall: int = 0
    stall_seconds: float = 0.0
    stall_delivers_anyway: bool = False
    hang_up_after_250: int = 0
    quit_reply: str | None = None
    gate: ReplyGate | None = None


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[float, list[str]]] = field(default_factory=list)
    # Faults per recipient address; None applies to every message. Tests share
    # one server, so a test provokes faults for its own user's address only.
    faults: dict[str | None, Faults] = field(default_factory=dict)
    in_flight: int = 0  # DATA transactions not answered yet
    # Recipients refused at RCPT (the reply per address); the others still get the message.
    refused_recipients: dict[str, str] = field(default_factory=dict)
    # What QUIT is answered with, per connection, set by the message it sent.
    quit_replies: dict[int, str] = field(default_factory=dict)

    def _faults_for(self, rcpt_tos: list[str]) -> Faults:
        for address in rcpt_tos:
            if address in self.faults:
                return self.faults[address]
        return self.faults.setdefault(None, Faults())

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> object:
        return self.quit_replies.pop(id(session), MISSING)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        try:
            faults = self._faults_for(list(envelope.rcpt_tos))
            reply = await self._data(server, envelope)
            if reply.startswith("250"):
                await self._after_accepting(server, session, faults)
            return reply
        finally:
            self.in_flight -= 1

    async def _after_accepting(self, server: SMTP, session: Session, faults: Faults) -> None:
        if faults.gate is not None:
            gate, faults.gate = faults.gate, None
            await gate.hold()
        if faults.quit_reply is not None:
            self.quit_replies[id(session)] = faults.quit_reply
        if faults.hang_up_after_250 > 0:
            faults.hang_up_after_250 -= 1
            assert isinstance(server, _Smtp)
            server.hang_up_after_reply = True

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


class _Smtp(SMTP):
    """aiosmtpd's server, able to hang up the moment a reply is written."""

    hang_up_after_reply = False

    async def push(self, status: AnyStr) -> None:
        hang_up, self.hang_up_after_reply = self.hang_up_after_reply, False
        if not hang_up or not isinstance(self.transport, asyncio.WriteTransport):
            await super().push(status)
            return
        # The reply and the FIN leave in one segment (the cork holds the reply until
        # the shutdown), so the client reads the 250 and finds the connection closed
        # in the same moment, before it can write QUIT. A FIN that came after its
        # QUIT would prove nothing: aiosmtplib takes that for a 221.
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        await super().push(status)
        self.transport.write_eof()
        self.transport.close()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    def __init__(self, host: str, port: int) -> None:
        self.handler = RecordingHandler()
        self.controller = _Controller(self.handler, hostname=host, port=port)

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

    def hang_up_after_250(self, times: int, *, to: str | None = None) -> None:
        """Answer 250 to the next `times` messages, then close the connection at once
        (the client's QUIT meets a closed socket)."""
        self.handler.faults.setdefault(to, Faults()).hang_up_after_250 = times

    def answer_quit(self, reply: str, *, to: str | None = None) -> None:
        """After accepting a message (to `to`, or any), answer that connection's QUIT
        with `reply` (a 5xx, say) instead of 221."""
        self.handler.faults.setdefault(to, Faults()).quit_reply = reply

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Refuse `address` at RCPT; a message to it and others still goes to the others."""
        self.handler.refused_recipients[address] = reply

    def gate_250(self, *, to: str) -> ReplyGate:
        """Hold the 250 to the next message to `to` until the gate is opened."""
        gate = ReplyGate()
        self.handler.faults.setdefault(to, Faults()).gate = gate
        return gate

    def reset(self) -> None:
        """Accept every message again."""
        self.handler.faults.clear()
        self.handler.refused_recipients.clear()
        self.handler.quit_replies.clear()

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
