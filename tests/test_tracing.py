"""One trace per report: the API and a worker (as OS processes, each with its own tracer
provider) export over OTLP/HTTP to a real receiver, and one trace ID covers the POST,
the workflow, every activity attempt (a refused email included) and their child spans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from temporalio.testing import WorkflowEnvironment

from reportflow.api.app import create_app
from reportflow.core import tracing
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.otlp import OtlpReceiver, ReceivedSpan
from tests.utils.reportflow_http import FINAL, Bearer, last_90_days, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import api_process, worker_process
from tests.utils.wait import wait_until

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    server.start()
    yield server
    server.stop()


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_one_trace_covers_the_request_the_workflow_and_every_attempt(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment, receiver: OtlpReceiver
) -> None:
    settings = make_settings(tmp_path, smtp.port)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    user_id = await create_user(engine, transactions=sample_transactions(start, 90, rng_seed=3))
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    # The first delivery is deferred (4xx), so the email step runs twice.
    smtp.refuse(1, "451 4.3.0 Mailbox busy, try again later", to=f"{user_id}@example.com")
    address = temporal_env.client.service_client.config.target_host
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}

    with worker_process(settings, address, tmp_path / "worker.log", otel) as worker:
        await worker.wait_ready()
        async with (
            api_process(settings, address, tmp_path / "api.log", otel) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            response = await http.post("/reports", json={}, headers=user.headers)
            assert response.status_code == 202, response.text
            report_id = response.json()["report_id"]
            done = await wait_status(http, user, report_id, FINAL)
            assert done["status"] == "completed", done

            posts = await wait_until(
                lambda: _async(receiver.named("POST /reports")),
                lambda spans: len(spans) == 1,
                what="the POST /reports server span",
            )
            trace_id = posts[0].trace_id
            spans = await wait_until(
                lambda: _async(receiver.trace(trace_id)),
                lambda spans: _attempts(spans, "send_email") == [(1, True), (2, False)],
                what="both email attempts in the report's trace",
            )

    names = {span.name for span in spans}
    assert {
        "POST /reports",
        "StartWorkflow:GenerateReport",
        "RunWorkflow:GenerateReport",
        "RunActivity:query",
        "RunActivity:render",
        "RunActivity:send_email",
        "sql aggregate",
        "chromium print",
        "smtp send",
    } <= names, names
    assert {span.service for span in spans} == {"reportflow-api", "reportflow-worker"}
    # One tree: the POST is its only root, every other span hangs off a span in it.
    ids = {span.span_id for span in spans}
    assert [s.name for s in spans if s.parent_span_id not in ids] == ["POST /reports"]
    # The report ID is on every span, the attempt on every span inside an activity.
    assert {span.attributes.get(tracing.REPORT_ID) for span in spans} == {report_id}
    assert all(tracing.ATTEMPT in s.attributes for s in spans if s.name.startswith("RunActivity"))

    # Later calls about the report (the status polls) are traces of their own, found by it.
    polls = [s for s in receiver.spans if s.name.startswith("GET /reports/")]
    assert polls and {s.attributes.get(tracing.REPORT_ID) for s in polls} == {report_id}
    assert trace_id not in {s.trace_id for s in polls}

    # The refused attempt is its own span, with the error and the exception recorded,
    # and its SMTP child span failed too.
    failed = next(s for s in spans if s.name == "RunActivity:send_email" and s.error)
    assert "451" in failed.status_message and "exception" in failed.events
    smtp_spans = sorted(
        (s for s in spans if s.name == "smtp send"), key=lambda s: s.attributes[tracing.ATTEMPT]
    )
    assert [s.error for s in smtp_spans] == [True, False]
    assert smtp_spans[0].parent_span_id == failed.span_id

    # Logs carry the trace and span next to the report ID.
    worker_lines = [
        line
        for line in _log_lines(tmp_path / "worker.log")
        if line.get("report_id") == report_id and "trace_id" in line
    ]
    assert {line["trace_id"] for line in worker_lines} == {trace_id}
    assert {line["span_id"] for line in worker_lines} <= ids
    assert any("aggregated" in str(line["message"]) for line in worker_lines)
    api_lines = [
        line
        for line in _log_lines(tmp_path / "api.log")
        if line.get("report_id") == report_id and "trace_id" in line
    ]
    assert api_lines and {line["trace_id"] for line in api_lines} == {trace_id}


def _attempts(spans: list[ReceivedSpan], activity: str) -> list[tuple[int, bool]]:
    """(attempt, failed?) of each attempt span of `activity`, in attempt order."""
    return sorted(
        (int(s.attributes[tracing.ATTEMPT]), s.error)
        for s in spans
        if s.name == f"RunActivity:{activity}"
    )


async def _async(value: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return value


def test_tracing_is_off_without_an_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    assert tracing.configure("reportflow-test") is False
    assert not tracing.enabled()
    # No provider was installed: OpenTelemetry's default hands out no-op spans.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert tracing.temporal_interceptors() == []
    app = create_app(make_settings(tmp_path, 25))
    assert not [m for m in app.user_middleware if "opentelemetry" in repr(m.cls).lower()]
    with tracing.span("sql aggregate") as span:
        assert not span.get_span_context().is_valid
        assert tracing.log_ids() == {}


def test_tracing_is_requested_by_the_standard_variables() -> None:
    assert tracing.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.requested({})
    assert not tracing.requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
