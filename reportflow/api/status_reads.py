"""`GET /reports/{id}` without FastAPI's routing and dependency solving.

The status read is what every client makes once a second while its report runs
("fire, acknowledge, poll"), so it must be the cheapest request there is. In the
FastAPI route, matching the route and solving its dependencies cost about twice
what the read itself does (the token's row and the watcher's current document).
This ASGI layer answers the reads that succeed (200, or 304 for a matching
`If-None-Match`) with the very same bytes and headers the route would
(`status_answer`), and hands every other request to the app: a missing or bad
token, another user's report, no such report, Temporal unreachable all get the
route's answers and its OpenAPI description.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from reportflow.api.watch import Snapshot, Watchers
from reportflow.contract import StatusDocument

_PATH = re.compile(r"/reports/([^/]+)")
# A Temporal run ID (a UUID); the route refuses anything else with a 422.
RUN_ID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_RUN_QUERY = re.compile(rb"run_id=([0-9A-Fa-f-]{36})")
RETRY_AFTER_SECONDS = "2"

# Status code, headers, body.
Answer = tuple[int, dict[str, str], bytes]


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def progress_headers(doc: StatusDocument) -> dict[str, str]:
    """`Retry-After` while the report is not finished: when to poll again."""
    return {} if doc.is_final else {"Retry-After": RETRY_AFTER_SECONDS}


def status_answer(snapshot: Snapshot, if_none_match: str | None) -> Answer:
    """Status code, headers and body of a status read: `ETag`, `Retry-After` while
    the report is not finished, `304` with no body when the client has this version."""
    headers = {
        "ETag": snapshot.etag,
        "Cache-Control": "private, no-cache",
        **progress_headers(snapshot.doc),
    }
    if _etag_matches(if_none_match, snapshot.etag):
        return 304, headers, b""
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(snapshot.body))
    return 200, headers, snapshot.body


class StatusReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        answer = await self._answer(scope, match.group(1)) if match else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        code, headers, body = answer
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, report_id: str) -> Answer | None:
        if scope["method"] != "GET":
            return None
        run_id = None
        if query := scope.get("query_string"):
            run = _RUN_QUERY.fullmatch(query)
            if run is None or not re.match(RUN_ID_PATTERN, run.group(1).decode()):
                return None
            run_id = run.group(1).decode()
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            return None
        state = scope["app"].state
        try:
            caller = await state.token_cache.lookup(state.engine, token)
            if caller is None:
                return None
            watchers: Watchers = state.watchers
            snapshot = await watchers.read(report_id, caller, run_id)
        except Exception:  # the route answers it, with its error handlers
            return None
        return None if snapshot is None else status_answer(snapshot, if_none_match)
