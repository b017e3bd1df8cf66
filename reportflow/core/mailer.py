"""Sending mail over SMTP, with SMTP replies sorted into retryable and not.

A 5xx reply (recipient refused, message rejected) is permanent: retrying sends
the same message to the same refusal, so it fails the report at once. A 4xx
reply, a refused connection or a dropped one is temporary and retried with backoff.

All of that holds only until the server answers `250` to the message: from then
on the message is sent. `QUIT` is a courtesy after it, with a short limit of its
own, and nothing it meets (a dropped connection, a `5xx`, silence) is a failure
of the send: it is reported in `Accepted.quit_error` for the log, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
from temporalio.exceptions import ApplicationError

from reportflow.core import tracing
from reportflow.core.config import Settings
from reportflow.models import SMTP_REJECTED, SMTP_UNAVAILABLE, RefusedRecipient

log = logging.getLogger(__name__)

# How long QUIT may take after the 250. A server that stalls on it has the
# message already; waiting longer would only eat into the time left to record it.
QUIT_SECONDS = 5.0


@dataclass
class Accepted:
    """The server's 250 to the message: it is sent, whatever the connection does next."""

    response: str  # the server's words with its 250 (often its queue ID)
    refused: list[RefusedRecipient] = field(default_factory=list)
    quit_error: str | None = None  # what went wrong after the 250, for the log only


class Mailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        mail_from: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        tls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.mail_from = mail_from
        self.username = username
        self.password = password
        self.starttls = starttls
        self.tls = tls
        self.timeout = timeout
        self._ehlo_name: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
        )

    @property
    def domain(self) -> str:
        address = parseaddr(self.mail_from)[1]
        return address.rpartition("@")[2] or "reportflow.localhost"

    async def send(
        self,
        message: EmailMessage,
        *,
        deadline: float | None = None,
        on_accepted: Callable[[Accepted], None] | None = None,
    ) -> Accepted:
        """One SMTP transaction; `deadline` (event-loop time) ends it, however far it got,
        until the server's 250. `on_accepted` runs right after the 250, before QUIT.

        Past the deadline the connection is dropped, not QUIT politely (which would
        wait for a stalled server's reply), and TimeoutError is raised.
        """
        if self.username and not (self.starttls or self.tls):
            # Settings refuses this too; a Mailer built by hand must not send AUTH in clear.
            raise ApplicationError(
                "SMTP credentials are set but the connection is not TLS: set "
                "SMTP_STARTTLS=true or SMTP_TLS=true; nothing was sent",
                type=SMTP_REJECTED,
                non_retryable=True,
            )
        with tracing.span("smtp send", {"server.address": self.host, "server.port": self.port}):
            client = aiosmtplib.SMTP(
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                # True, not None: a server that offers no STARTTLS is refused before
                # AUTH, rather than sent the credentials in clear.
                start_tls=self.starttls,
                use_tls=self.tls,
                timeout=self.timeout,
            )
            try:
                errors, response = await self._transaction(client, message, deadline)
            except BaseException:
                client.close()
                raise
            accepted = Accepted(
                response=response,
                refused=[
                    RefusedRecipient(address, refusal.code, refusal.message)
                    for address, refusal in errors.items()
                ],
            )
            try:
                if on_accepted is not None:
                    on_accepted(accepted)
            finally:
                accepted.quit_error = await self._quit(client, deadline)
            return accepted

    async def _quit(self, client: aiosmtplib.SMTP, deadline: float | None) -> str | None:
        """QUIT after the 250, bounded; what went wrong, or None. Never raises: the
        message is already the server's, so no answer here can unsend it."""
        loop = asyncio.get_running_loop()
        until = loop.time() + QUIT_SECONDS
        if deadline is not None:
            until = min(until, deadline)
        try:
            async with asyncio.timeout_at(until):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        finally:
            client.close()
        return None

    async def _transaction(
        self, client: aiosmtplib.SMTP, message: EmailMessage, deadline: float | None
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """Connect and send, up to the server's 250: the refused recipients and its reply."""
        try:
            async with asyncio.timeout_at(deadline):
                if self._ehlo_name is None:
                    # The name EHLO gives, as aiosmtplib would find it, once a process
                    # rather than (a thread and a resolver lookup) once a message.
                    self._ehlo_name = await asyncio.to_thread(socket.getfqdn)
                client.local_hostname = self._ehlo_name
                await client.connect()
                return await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = sorted({r.code for r in err.recipients})
            if all(code >= 500 for code in codes):
                raise ApplicationError(
                    f"the mail server refused every recipient ({codes}): "
                    f"{'; '.join(r.message for r in err.recipients)}; "
                    "check the user's address, then redrive the report",
                    type=SMTP_REJECTED,
                    non_retryable=True,
                ) from err
            raise ApplicationError(
                f"the mail server deferred the recipients ({codes}); trying again",
                type=SMTP_UNAVAILABLE,
            ) from err
        except aiosmtplib.SMTPResponseException as err:
            if err.code >= 500:
                raise ApplicationError(
                    f"the mail server rejected the message with {err.code} {err.message}; "
                    "fix the cause named there, then redrive the report",
                    type=SMTP_REJECTED,
                    non_retryable=True,
                ) from err
            raise ApplicationError(
                f"the mail server is unavailable: {err.code} {err.message}",
                type=SMTP_UNAVAILABLE,
            ) from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise ApplicationError(
                f"cannot reach the mail server at {self.host}:{self.port}: {err}",
                type=SMTP_UNAVAILABLE,
            ) from err
