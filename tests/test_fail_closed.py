"""Defaults that fail closed: ENVIRONMENT unset is production (a token for
/metrics, no migrations at boot), a short SECRET_KEY is refused wherever the app
is built, SMTP credentials never travel in clear, production renders only inside
Chromium's sandbox unless the operator opts out, and `reportflow dev` answers
only to loopback Host headers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError
from sqlalchemy import inspect
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from reportflow.api.app import create_app
from reportflow.core import browser as browser_module
from reportflow.core.browser import Browser, SandboxUnavailable, count_pages, find_chromium
from reportflow.core.config import MIN_SECRET_BYTES, Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.mailer import Mailer
from reportflow.core.tokens import create_token
from reportflow.dev import dev_app
from reportflow.report import render_html
from reportflow_dev.testing import free_port
from tests.conftest import SECRETS, make_settings
from tests.utils.reports import make_report_data
from tests.utils.smtp import SmtpServer
from tests.utils.stack import serve_api


@pytest.fixture
def unset_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the shell or a .env decides what an unset setting means."""
    for name in ("ENVIRONMENT", "SECRET_KEY", "CHROMIUM_NO_SANDBOX", "SMTP_USERNAME"):
        monkeypatch.delenv(name, raising=False)


def _unset(tmp: Path, smtp_port: int, **overrides: Any) -> Settings:
    """The suite's settings with ENVIRONMENT left out, as an operator who set none."""
    values = make_settings(tmp, smtp_port, **overrides).model_dump()
    values.pop("environment")
    return Settings(**values, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.usefixtures("unset_environment")
def test_environment_unset_is_production() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production" and not settings.is_dev
    assert settings.chromium_sandbox_required
    assert settings.secret_problem() is not None  # no SECRET_KEY: nothing may sign


@pytest.mark.usefixtures("unset_environment")
def test_a_short_secret_key_is_refused() -> None:
    with pytest.raises(ValidationError, match=f"at least {MIN_SECRET_BYTES}"):
        Settings(secret_key="x" * 12, _env_file=None)  # type: ignore[call-arg]
    assert Settings(secret_key="x" * MIN_SECRET_BYTES, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.usefixtures("unset_environment")
def test_create_app_refuses_without_a_secret_whatever_server_runs_it(tmp_path: Path) -> None:
    """The check is in the factory: uvicorn, gunicorn or any ASGI server meets it."""
    settings = _unset(tmp_path, 1025, secret_key=Settings.model_fields["secret_key"].default)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(settings)


@pytest.mark.usefixtures("unset_environment")
async def test_environment_unset_metrics_want_a_token_and_nothing_migrates(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    # An empty database: production checks the schema, it does not create one.
    (tmp_path / "empty").mkdir()
    empty = create_app(_unset(tmp_path / "empty", smtp.port))
    with pytest.raises(Exception, match="reportflow db upgrade"):
        async with empty.router.lifespan_context(empty):
            pass
    engine = create_engine(empty.state.settings.database_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    await engine.dispose()
    assert tables == []

    settings = _unset(tmp_path, smtp.port)
    engine = create_engine(settings.database_url)
    await create_schema(engine)  # what `reportflow db upgrade` does
    admin = await create_token(engine, admin=True)
    await engine.dispose()
    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        anonymous = await http.get("/metrics")
        assert anonymous.status_code == 401
        assert "METRICS_TOKEN" in anonymous.json()["detail"]
        allowed = await http.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert allowed.status_code == 200 and "reportflow_queue_backlog" in allowed.text


# ------------------------------------------------------------------ SMTP


@dataclass
class AuthRecorder:
    """An SMTP server that offers AUTH without TLS (auth_require_tls=False), as a
    careless relay does, and records every credential it is sent."""

    logins: list[bytes] = field(default_factory=list)
    ehlos: int = 0
    received: list[Envelope] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append(data.login)
        return AuthResult(success=True)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.ehlos += 1
        session.host_name = hostname  # a handler's EHLO hook sets it itself
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def clear_auth_server() -> Iterator[tuple[AuthRecorder, int]]:
    recorder = AuthRecorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=recorder,
    )
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "r@example.com", "u@example.com", "x"
    message.set_content("hello")
    return message


async def test_smtp_credentials_never_travel_in_clear(
    clear_auth_server: tuple[AuthRecorder, int],
) -> None:
    recorder, port = clear_auth_server
    common: dict[str, Any] = {"host": "127.0.0.1", "port": port, "mail_from": "r@example.com"}

    # The control: without credentials the server takes mail in clear.
    await Mailer(**common).send(_message())
    assert len(recorder.received) == 1 and recorder.ehlos == 1

    # Credentials with no TLS asked for: refused before connecting at all.
    with pytest.raises(ApplicationError, match="not TLS"):
        await Mailer(**common, username="user", password="secret").send(_message())
    assert recorder.ehlos == 1

    # STARTTLS required, and this server offers none: no AUTH is sent.
    with pytest.raises(ApplicationError, match="STARTTLS"):
        await Mailer(**common, username="user", password="secret", starttls=True).send(_message())
    assert recorder.logins == [] and len(recorder.received) == 1

    # And the setting says so before anything runs.
    with pytest.raises(ValidationError, match="SMTP_STARTTLS=true"):
        Settings(smtp_username="user", smtp_password="secret", **SECRETS, _env_file=None)  # type: ignore[call-arg]


# ------------------------------------------------------------------ Chromium


async def test_production_renders_only_inside_the_sandbox_unless_opted_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chromium = find_chromium(os.environ.get("CHROMIUM_EXECUTABLE"))
    html = render_html(make_report_data())
    if os.geteuid() != 0:
        pytest.skip("as a user with namespaces the sandbox starts; this checks its failure")
    # As root the sandbox cannot start: said at once, nothing launched.
    required = Browser(chromium, require_sandbox=True)
    with pytest.raises(SandboxUnavailable, match="CHROMIUM_NO_SANDBOX=true") as refused:
        await required.pdf(html)
    assert refused.value.non_retryable and "running as root" in str(refused.value)
    assert required.launches == 0

    # Asked for whoever we are, Chromium itself fails to start it: the same error.
    monkeypatch.setattr(browser_module, "sandbox_choice", lambda: (True, "sandbox on"))
    tried = Browser(chromium, require_sandbox=True)
    try:
        with pytest.raises(SandboxUnavailable, match="cannot start"):
            await tried.start()
    finally:
        await tried.close()

    # The documented opt-out renders, without trying the sandbox.
    opted_out = Browser(chromium, require_sandbox=False, no_sandbox=True)
    try:
        assert count_pages(await opted_out.pdf(html)) >= 1
        assert opted_out.sandbox is False
        assert opted_out.sandbox_note == "--no-sandbox: CHROMIUM_NO_SANDBOX=true"
    finally:
        await opted_out.close()


@pytest.mark.usefixtures("unset_environment")
def test_the_sandbox_setting_follows_environment_and_opt_out(tmp_path: Path) -> None:
    assert _unset(tmp_path, 1025).chromium_sandbox_required
    assert not _unset(tmp_path, 1025, chromium_no_sandbox=True).chromium_sandbox_required
    assert not make_settings(tmp_path, 1025).chromium_sandbox_required  # ENVIRONMENT=test


# ------------------------------------------------------------------ reportflow dev

DEMO = "rf_demo-token-for-this-test"


def _dev_client(tmp_path: Path, *, public: bool) -> httpx.AsyncClient:
    settings = make_settings(tmp_path, 1025, environment="dev")
    (tmp_path / "outbox").mkdir(exist_ok=True)
    app = dev_app(settings, outbox=tmp_path / "outbox", token=DEMO, public=public)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost:8000")


async def test_dev_answers_only_to_loopback_host_headers(tmp_path: Path) -> None:
    """A DNS-rebinding page (its own name pointed at 127.0.0.1) reads nothing."""
    async with _dev_client(tmp_path, public=False) as http:
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"):
            page = await http.get("/", headers={"Host": host})
            assert page.status_code == 200 and DEMO in page.text, host
        for host in ("rebind.attacker.example:8000", "rebind.attacker.example", "10.0.0.5"):
            for path in ("/", "/dev/outbox", "/docs"):
                refused = await http.get(path, headers={"Host": host})
                assert refused.status_code == 400, (host, path)
                assert DEMO not in refused.text and "loopback" in refused.text


async def test_dev_public_never_embeds_the_demo_token(tmp_path: Path) -> None:
    async with _dev_client(tmp_path, public=True) as http:
        page = await http.get("/", headers={"Host": "reportflow.lan:8000"})
        assert page.status_code == 200 and DEMO not in page.text
        local = await http.get("/", headers={"Host": "localhost:8000"})
        assert DEMO not in local.text
        # The outbox stays this machine's, under any name a rebinding page uses.
        outbox = await http.get("/dev/outbox", headers={"Host": "reportflow.lan:8000"})
        assert outbox.status_code == 400
        assert (
            await http.get("/dev/outbox", headers={"Host": "localhost:8000"})
        ).status_code == 200
