"""Report kinds: the documented module a team imports to add its own report.

A kind is a plain object a team builds in its own module (outside this
repository) and names in REPORT_KINDS (`module:attribute,...`) or in a
package's entry points (group `reportflow.report_kinds`). Every surface (the
API, the worker, the CLI, the page) reads the one registry `load_kinds` builds
at start; a kind that is wrong stops the process there with an error naming
the module and what is wrong, never on a user's first request.

    merchant_count = ReportKind(
        name="merchant-count", title="Merchant count", params=Days,
        query=count_merchants, template=Path(__file__).with_name("merchant_count.html.j2"),
    )

- `params`: a pydantic model; its JSON Schema is served by `GET /kinds`, bad
  values get a 422 naming the field.
- `query(ctx, params)`: async, on a read-only connection; returns JSON-able data
  (it travels through Temporal, encrypted; a large result goes by the report store).
- `template`: a Jinja2 file (autoescaped; `data`, `params`, `user`) printed to PDF
  by the worker's isolated Chromium; or `render(data, params) -> bytes` of `format`;
  or `export(ctx, params)`: an async iterator of bytes streamed from SQL into the
  report store in bounded memory, for outputs too big to hold (a CSV of every row).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points

from reportflow.models import DEFAULT_KIND
from reportflow.report.builtin_kinds import BUILTIN_KINDS
from reportflow.report.kind import (
    KindError,
    QueryContext,
    ReportKind,
    canonical_params,
    params_hash,
)

__all__ = [
    "DEFAULT_KIND",
    "ENTRY_POINT_GROUP",
    "KindError",
    "KindRegistry",
    "QueryContext",
    "ReportKind",
    "canonical_params",
    "load_kinds",
    "params_hash",
]

ENTRY_POINT_GROUP = "reportflow.report_kinds"


class KindRegistry(Mapping[str, ReportKind]):
    """The kinds this process serves, by name; read-only once built."""

    def __init__(self, kinds: Iterable[tuple[ReportKind, str]]) -> None:
        self._kinds: dict[str, ReportKind] = {}
        self._origin: dict[str, str] = {}
        for kind, origin in kinds:
            if kind.name in self._kinds:
                raise KindError(
                    f"{origin}: report kind {kind.name!r} is already registered by "
                    f"{self._origin[kind.name]}; kind names must be unique"
                )
            self._kinds[kind.name] = kind
            self._origin[kind.name] = origin

    def __getitem__(self, name: str) -> ReportKind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def origin(self, name: str) -> str:
        return self._origin[name]


def _kinds_of(value: object, origin: str) -> list[ReportKind]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, ReportKind):
            raise KindError(
                f"{origin} is a {type(item).__name__}, not a reportflow.kinds.ReportKind"
            )
    return items  # type: ignore[return-value]


def _load_entry(entry: str) -> list[ReportKind]:
    origin = f"REPORT_KINDS entry {entry!r}"
    module_name, sep, attribute = entry.partition(":")
    if not sep or not module_name or not attribute:
        raise KindError(f"{origin}: write it as module:attribute (like my_reports:statement)")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # whatever the team's module raised while importing
        raise KindError(
            f"{origin}: module {module_name!r} could not be imported: {type(err).__name__}: {err}"
        ) from err
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise KindError(f"{origin}: module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return _kinds_of(value, origin)


def load_kinds(setting: str = "") -> KindRegistry:
    """The built-in kinds, then every entry point of the group, then REPORT_KINDS.

    Raises KindError naming the module and what is wrong."""
    found: list[tuple[ReportKind, str]] = [(k, "reportflow (built in)") for k in BUILTIN_KINDS]
    for point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {point.name!r} ({point.value}) of {ENTRY_POINT_GROUP}"
        try:
            value = point.load()
        except Exception as err:
            raise KindError(f"{origin} could not be loaded: {type(err).__name__}: {err}") from err
        found += [(k, origin) for k in _kinds_of(value, origin)]
    for entry in filter(None, (e.strip() for e in setting.split(","))):
        found += [(k, f"REPORT_KINDS entry {entry!r}") for k in _load_entry(entry)]
    return KindRegistry(found)
