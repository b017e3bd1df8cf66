"""What a report kind is: `ReportKind`, `QueryContext`, and the rules a kind obeys.

Published as `reportflow.kinds` (import them from there); they live here, below
the built-in kinds that use them, so the registry in `reportflow.kinds` can
import the built-ins without an import circle.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from reportflow.models import CONTENT_TYPES

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
