"""The query and render steps of any report kind other than the built-in PDF's typed ones.

A kind's query runs on a read-only connection (REPORT_KINDS_DATABASE_URL, else the
application database); what it returns travels back through Temporal as JSON
(encrypted by the codec) or, past INLINE_DATA_BYTES, through the report store.
Its file is printed by the worker's Chromium from its template, built by its
`render`, or streamed by its `export` straight from SQL into the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.exceptions import ApplicationError

from reportflow.core.db import create_engine, sqlite_query_only, users
from reportflow.kinds import KindRegistry, QueryContext, ReportKind
from reportflow.models import UNKNOWN_USER, KindData
from reportflow.report.html import format_cents, short_datetime, whole_units

log = logging.getLogger(__name__)

# Temporal warns at 256 KB a payload; the codec adds a little. Larger data goes
# by the store and only its key travels.
INLINE_DATA_BYTES = 128 * 1024
UNKNOWN_KIND = "UnknownKind"
# Wall 2 of the built-in report, for a team's template that lacks it (the
# browser's walls hold either way).
CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "style-src 'unsafe-inline'; img-src data:; font-src data:\">"
)
_HEAD = re.compile(r"<head[^>]*>", re.IGNORECASE)


def read_only_engine(url: str) -> AsyncEngine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_query_only)
    return engine


@contextlib.asynccontextmanager
async def query_context(
    engine: AsyncEngine, *, user_id: str, report_id: str
) -> AsyncIterator[QueryContext]:
    async with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            # First in the transaction the kind's statements run in (a session-level
            # SET at connect time was undone when the driver rolled its transaction back).
            await connection.execute(text("SET TRANSACTION READ ONLY"))
        yield QueryContext(user_id=user_id, report_id=report_id, connection=connection)


def kind_of(kinds: KindRegistry, name: str) -> ReportKind:
    try:
        return kinds[name]
    except KeyError:
        raise ApplicationError(
            f"report kind {name!r} is not registered on this worker; add it to REPORT_KINDS "
            "(or its package's entry points) and restart the worker",
            type=UNKNOWN_KIND,
        ) from None


async def user_name(app: AsyncConnection, user_id: str) -> str:
    name = await app.scalar(select(users.c.name).where(users.c.id == user_id))
    if name is None:
        raise ApplicationError(
            f"unknown user {user_id}: there is no such id in the users table",
            type=UNKNOWN_USER,
            non_retryable=True,
        )
    return str(name)


def encode_data(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _environment(folder: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=True,  # wall 1: no data becomes markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_cents
    env.filters["short_dt"] = short_datetime
    env.filters["whole"] = whole_units
    return env


def template_html(kind: ReportKind, *, data: Any, params: Any, user: dict[str, str]) -> str:
    """A template kind's page, with the CSP wall first in its head."""
    assert kind.template is not None
    path = Path(kind.template)
    html = (
        _environment(path.parent)
        .get_template(path.name)
        .render(data=data, params=params, user=user)
    )
    head = _HEAD.search(html)
    if head is None:
        return CSP + html
    return html[: head.end()] + CSP + html[head.end() :]


def data_of(stored: KindData, loaded: bytes | None) -> Any:
    if stored.json is not None:
        return json.loads(stored.json)
    if loaded is None:
        raise ApplicationError(
            f"the query's result {stored.key} is missing from the report store; "
            "redrive the report to query again",
            type="DataMissing",
            non_retryable=True,
        )
    return json.loads(loaded)
