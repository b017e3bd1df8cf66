"""Sending mail over SMTP, with SMTP replies sorted into retryable and not.

A 5xx reply (recipient refused, message rejected) is permanent: retrying sends
the same message to the same refusal, so it fails the report at once. A 4xx
reply, a refused connection or a dropped one is temporary and retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from email.message import EmailMessage
from email.utils import parseaddr

import aiosmtplib
from temporalio.exceptions import ApplicationError

from reportflow.core import tracing
from reportflow.core.config import Settings
from reportflow.models import SMTP_REJECTED, SMTP_UNAVAILABLE

log = logging.getLogger(__name__)


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

    async def send(self, message: EmailMessage, *, deadline: float | None = None) -> None:
        """One SMTP transaction; `deadline` (event-loop time) ends it, however far it got.

        Past the deadline the connection is dropped, not QUIT politely (which would
        wait for a stalled server's reply), and TimeoutError is raised.
        """
        with tracing.span("smtp send", {"server.address": self.host, "server.port": self.port}):
            await self._send(message, deadline)

    async def _send(self, message: EmailMessage, deadline: float | None) -> None:
        if self.username and not (self.starttls or self.tls):
            # Settings refuses this too; a Mailer built by hand must not send AUTH in clear.
            raise ApplicationError(
                "SMTP credentials are set but the connection is not TLS: set "
                "SMTP_STARTTLS=true or SMTP_TLS=true; nothing was sent",
                type=SMTP_REJECTED,
                non_retryable=True,
            )
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
            async with asyncio.timeout_at(deadline):
                if self._ehlo_name is None:
                    # The name EHLO gives, as aiosmtplib would find it, once a process
                    # rather than (a thread and a resolver lookup) once a message.
                    self._ehlo_name = await asyncio.to_thread(socket.getfqdn)
                client.local_hostname = self._ehlo_name
                await client.connect()
                await client.send_message(message)
                await client.quit()
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
        finally:
            client.close()
