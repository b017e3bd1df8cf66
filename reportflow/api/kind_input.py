"""A request's kind and parameters checked against the registry: a 422 naming what is wrong."""

from __future__ import annotations

from datetime import date

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from reportflow.contract import ScheduleRequest
from reportflow.kinds import KindRegistry, ReportKind
from reportflow.models import DEFAULT_KIND
from reportflow.service.reports import kind_for_period
from reportflow.service.schedules import previous_period


def invalid(
    err: ValidationError | None, *, loc: tuple[str, ...] = (), msg: str = ""
) -> RequestValidationError:
    """A 422 shaped as FastAPI's own, each error located in the body."""
    if err is None:
        return RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": msg}])
    errors = err.errors(include_url=False, include_context=False, include_input=False)
    return RequestValidationError([{**e, "loc": ("body", *loc, *e["loc"])} for e in errors])


def registered(kinds: KindRegistry, name: object) -> ReportKind:
    if not isinstance(name, str) or name not in kinds:
        known = ", ".join(sorted(kinds))
        raise invalid(
            None, loc=("kind",), msg=f"unknown report kind {name!r}; GET /kinds lists them: {known}"
        )
    return kinds[name]


def check_schedule_kind(kinds: KindRegistry, body: ScheduleRequest) -> None:
    """The schedule's kind is registered and its parameters valid (with a period as range)."""
    kind = registered(kinds, body.kind)
    if kind.name == DEFAULT_KIND and body.params:
        raise invalid(None, loc=("params",), msg="the transactions report takes no params")
    start, end = previous_period(body.every, date.today())
    try:
        kind_for_period(kind, body.params, start, end)
    except ValidationError as err:
        raise invalid(err, loc=("params",)) from None
