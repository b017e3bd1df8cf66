"""Liveness, readiness and the API docs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import temporal_cli_path
from reportflow.core.tokens import create_token
from reportflow_dev.testing import free_port, serve_api
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import Bearer
from tests.utils.smtp import SmtpServer


async def test_health_ready_and_docs(http: httpx.AsyncClient, app_engine: AsyncEngine) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {}}  # anonymous: the status only
    admin = Bearer(await create_token(app_engine, admin=True))
    detailed = await http.get("/readyz", headers=admin.headers)
    assert detailed.json()["checks"] == {"temporal": "ok", "database": "ok"}
    assert (await http.get("/docs")).status_code == 200
    schema = (await http.get("/openapi.json")).json()
    post = schema["paths"]["/reports"]["post"]
    assert {"202", "401", "413", "422", "429"} <= set(post["responses"])
    status_doc = schema["components"]["schemas"]["StatusDocument"]
    assert status_doc["examples"][0]["report_id"].startswith("report-")


async def test_not_ready_while_temporal_is_unreachable(tmp_path: Path, smtp: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp.port)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    admin = Bearer(await create_token(engine, admin=True))
    await engine.dispose()
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    async with (
        serve_api(settings, temporal_address=dead) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        live = await http.get("/healthz")
        anonymous = await http.get("/readyz")
        ready = await http.get("/readyz", headers=admin.headers)

    assert live.status_code == 200
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "not ready", "checks": {}}  # no error text
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["checks"]["temporal"].startswith("unavailable")
    assert ready.json()["checks"]["database"] == "ok"


async def test_reports_answer_503_not_500_while_temporal_is_unreachable(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp.port)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    dead = f"127.0.0.1:{free_port()}"
    async with (
        serve_api(settings, temporal_address=dead) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        created = await http.post("/reports", json={}, headers=user.headers)
        status = await http.get(
            f"/reports/report-{user_id}-2026-01-01-2026-01-02", headers=user.headers
        )

    for response in (created, status):
        assert response.status_code == 503, response.text
        assert "unavailable" in response.json()["detail"]
        assert response.headers["Retry-After"]


async def test_a_misconfigured_temporal_is_a_500_with_the_cause_not_a_503(
    tmp_path: Path, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server without the ReportUserId search attribute: waiting will not fix it,
    so the API says so (500, cause logged) and /readyz names the cause."""
    settings = make_settings(tmp_path, smtp.port)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    admin = Bearer(await create_token(engine, admin=True))
    await engine.dispose()
    bare = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(), dev_server_log_level="error"
    )
    try:
        address = bare.client.service_client.config.target_host
        async with (
            serve_api(settings, temporal_address=address) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            created = await http.post("/reports", json={}, headers=user.headers)
            ready = await http.get("/readyz", headers=admin.headers)  # details for admins
    finally:
        await bare.shutdown()

    assert created.status_code == 500, created.text
    assert "Retry-After" not in created.headers
    assert "misconfigured" in created.json()["detail"]
    assert "ReportUserId" in caplog.text
    assert ready.status_code == 503
    assert ready.json()["checks"]["temporal"].startswith("error: INVALID_ARGUMENT")
