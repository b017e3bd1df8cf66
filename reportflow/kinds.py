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

import hashlib
import importlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from reportflow.models import CONTENT_TYPES, DEFAULT_KIND

__all__ = [
    "DEFAULT_KIND",
    "ENTRY_POINT_GROUP",
    "KindError",
    "KindRegistry",
    "QueryContext",
    "ReportKind",
    "canonical_params",
    "load_kinds",
]

ENTRY_POINT_GROUP = "reportflow.report_kinds"

# Lower-case words joined by hyphens, starting with a letter: never mistaken for
# the date of a `report-<user>-<start>-<end>` ID, and safe in a metric label.
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_FORMAT = re.compile(r"^[a-z0-9]{1,10}$")
MAX_NAME = 40


@dataclass(frozen=True)
class QueryContext:
    """What a kind's query is given: whose report, and a read-only connection."""

    user_id: str
    report_id: str
    connection: AsyncConnection


Query = Callable[[QueryContext, Any], Awaitable[Any]]
Render = Callable[[Any, Any], bytes]
Export = Callable[[QueryContext, Any], AsyncIterator[bytes]]


class KindError(ValueError):
    """A kind that cannot be registered: the message names it and what is wrong."""


@dataclass(frozen=True)
class ReportKind:
    name: str
    title: str
    params: type[BaseModel]
    query: Query
    template: Path | None = None
    render: Render | None = None
    format: str = "pdf"
    description: str = ""
    export: Export | None = None

    def __post_init__(self) -> None:
        where = f"report kind {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise KindError(
                f"{where}: a name is lower-case words joined by hyphens (like merchant-count)"
            )
        if len(self.name) > MAX_NAME:
            raise KindError(f"{where}: a name has at most {MAX_NAME} characters")
        if not (isinstance(self.params, type) and issubclass(self.params, BaseModel)):
            raise KindError(f"{where}: params must be a pydantic model class")
        if not callable(self.query):
            raise KindError(f"{where}: query must be an async function (ctx, params)")
        ways = [w for w in (self.template, self.render, self.export) if w is not None]
        if len(ways) != 1:
            raise KindError(f"{where}: give exactly one of template, render or export")
        if not isinstance(self.format, str) or not _FORMAT.match(self.format):
            raise KindError(f"{where}: format is a short file extension such as pdf or csv")
        if self.template is not None:
            if self.format != "pdf":
                raise KindError(f"{where}: a template prints to pdf; use render for {self.format}")
            if not Path(self.template).is_file():
                raise KindError(f"{where}: template {self.template} is not a file")

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.format, "application/octet-stream")

    def parse(self, values: Mapping[str, Any]) -> BaseModel:
        """The validated parameters (raises pydantic's ValidationError)."""
        return self.params.model_validate(dict(values))

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()


def canonical_params(params: BaseModel) -> str:
    """One text for equal parameters: defaults filled in, keys sorted, no spaces."""
    return json.dumps(
        params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def params_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


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
    from reportflow.report.builtin_kinds import BUILTIN_KINDS

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
