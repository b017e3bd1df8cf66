"""OpenTelemetry tracing: one trace per report, from the API through Temporal to each activity.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set; then spans go over OTLP/HTTP (protobuf), configured by the standard `OTEL_*`
variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
`OTEL_BSP_*`, ...). `OTEL_SDK_DISABLED=true` turns it off again.

The pieces: FastAPI's instrumentation makes the request span; Temporal's
`TracingInterceptor` on the client carries its context in the workflow's headers,
and on the worker continues it into the workflow and into every activity attempt
(`RunActivity:*`, one span per attempt, with its error); `span()` makes the child
spans inside activities. Every span gets `reportflow.report_id`: the request's from
the route or the path, Temporal's and the activities' from `ReportIdSpanProcessor`
(a report's workflow ID is its report ID).

Without the variables nothing here touches the global tracer provider: `span()`
hands out OpenTelemetry's no-op spans, and no interceptor or middleware is added.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.util.types import AttributeValue
from temporalio import activity

from reportflow.models import report_id_of

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

log = logging.getLogger(__name__)

REPORT_ID = "reportflow.report_id"
ATTEMPT = "reportflow.attempt"
# Requests that would only add noise to the traces (scrapes and probes).
DEFAULT_EXCLUDED_URLS = "/metrics$,/healthz$,/readyz$"

_tracer = trace.get_tracer("reportflow")
_provider: TracerProvider | None = None


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def enabled() -> bool:
    """Whether this process exports traces (`configure` ran and found an endpoint)."""
    return _provider is not None


def configure(service_name: str) -> bool:
    """Install the OTLP/HTTP exporter as this process's tracer provider, if asked to.

    Idempotent; `service_name` applies unless OTEL_SERVICE_NAME names another.
    """
    global _provider
    if _provider is not None or not requested():
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    # First, so the attribute is on the span before any exporter sees it.
    provider.add_span_processor(ReportIdSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol != "http/protobuf":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: traces go as OTLP/HTTP "
            "protobuf, so point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port "
            "(usually 4318)",
            protocol,
        )
    log.info(
        "exporting traces over OTLP/HTTP to %s",
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    return True


def shutdown() -> None:
    """Flush and stop the exporter (also done at interpreter exit)."""
    if _provider is not None:
        _provider.shutdown()


def temporal_interceptors() -> list[Interceptor]:
    """For `Client.connect`: a client's interceptor also applies to the workers built on it."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_app(app: FastAPI) -> None:
    """Make each request a server span (the parent of everything the route starts)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_mark_report_request,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS),
        # One span per request, not three (the ASGI receive and send events).
        exclude_spans=["receive", "send"],
    )


# /reports/{id}, /reports/{id}/events|pdf|cancel, /admin/reports/{id}/redrive
_REPORT_PATH = re.compile(r"^(?:/admin)?/reports/([^/]+)")


def _mark_report_request(span: trace.Span, scope: dict[str, Any]) -> None:
    """A request about one report carries its ID, so a tracing UI finds every call
    about it (`POST /reports` learns the ID later: `mark_report`)."""
    match = _REPORT_PATH.match(scope.get("path", ""))
    if match and span.is_recording():
        span.set_attribute(REPORT_ID, match.group(1))


def mark_report(report_id: str) -> None:
    """The current span (`POST /reports`'s, which learns the ID only once it has
    started the report) belongs to `report_id`."""
    trace.get_current_span().set_attribute(REPORT_ID, report_id)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[trace.Span]:
    """A child span of the current one; an exception marks it as an error and goes on."""
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def log_ids() -> dict[str, str]:
    """The current trace and span IDs (hex, as tracing UIs show them), for log lines."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(span_context.trace_id),
        "span_id": trace.format_span_id(span_context.span_id),
    }


def _report_id_of(attributes: Mapping[str, object]) -> str | None:
    """A report's workflow ID is its report ID: Temporal's spans carry it as an
    attribute, and every span started inside an activity can ask the activity."""
    workflow_id = attributes.get("temporalWorkflowID")
    if not isinstance(workflow_id, str):
        workflow_id = activity.info().workflow_id if activity.in_activity() else None
    return report_id_of(workflow_id) if workflow_id is not None else None


def _attempt() -> int | None:
    return activity.info().attempt if activity.in_activity() else None


class ReportIdSpanProcessor(SpanProcessor):
    """Copies the report ID (the workflow ID) and, inside an activity, the attempt
    number onto every span Temporal or an activity starts."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        report_id = _report_id_of(span.attributes or {})
        if report_id is not None:
            span.set_attribute(REPORT_ID, report_id)
        attempt = _attempt()
        if attempt is not None:
            span.set_attribute(ATTEMPT, attempt)
