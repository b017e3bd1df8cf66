"""A Python client for a product backend: request a report of any kind, follow it, download it.

    async with ReportflowClient("https://reports.example.com", token) as reports:
        doc = await reports.request("merchant-count", days=30)
        async with asyncio.timeout(600):
            done = await reports.follow(doc["report_id"])
        if done["status"] == "completed":
            await reports.download(doc["report_id"], Path("merchants.pdf"))

Only the HTTP API is used (no reportflow internals), so it works against any
deployment. Documents are the API's status documents, as dicts. `reportflow
request` is built on this client too (`reportflow/cli/request/`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import EventSource, aconnect_sse

FINAL = {"completed", "failed", "cancelled"}
# The API sends a keep-alive comment every 15 s; silence much longer means a dead stream.
EVENTS_READ_TIMEOUT = 60.0


class ReportflowError(Exception):
    """The API refused a call; `detail` is its sentence for a person, `retry_after`
    the seconds its `Retry-After` asked for (0 without one)."""

    def __init__(self, status_code: int, detail: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after


def _detail(response: httpx.Response) -> str:
    """The API's `detail` in words (FastAPI's validation errors are a list of them)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        messages = []
        for item in detail:
            if isinstance(item, dict):
                messages.append(str(item.get("msg", item)).removeprefix("Value error, "))
            else:
                messages.append(str(item))
        return "; ".join(messages)
    return str(detail)


def retry_after(response: httpx.Response) -> float:
    """The seconds a response's `Retry-After` asks for (0 without one)."""
    try:
        return max(float(response.headers.get("Retry-After", 0)), 0.0)
    except ValueError:
        return 0.0


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise ReportflowError(response.status_code, _detail(response), retry_after(response))
    return response


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events response (SSEError if it is not one)."""
    async for event in EventSource(response).aiter_sse():
        # A block without data (a keep-alive comment after an event with an ID) is no
        # event by the spec; httpx-sse yields it, with empty data, once an ID was seen.
        if event.data:
            yield event.event, event.data


def _run_params(run_id: str | None) -> dict[str, str]:
    """`?run_id=`: the run a caller started or found. With several API replicas, one
    that did not start the run may otherwise describe the report's previous run."""
    return {"run_id": run_id} if run_id else {}


class ReportflowClient:
    """`http`: an httpx client of your own to talk through (its base URL and headers are
    used as they are, and it is not closed here); else one is made from `url` and `token`."""

    def __init__(
        self,
        url: str = "",
        token: str = "",
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._owned = http is None
        self._http = http or httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def __aenter__(self) -> ReportflowClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owned:
            await self._http.aclose()

    def url_of(self, link: str) -> str:
        """A link of a document (`/reports/...`) as a full URL."""
        return str(self._http.base_url.join(link))

    async def kinds(self) -> list[dict[str, Any]]:
        """The kinds the service runs, with their parameters' JSON Schema."""
        kinds: list[dict[str, Any]] = _checked(await self._http.get("/kinds")).json()["kinds"]
        return kinds

    async def request(
        self, kind: str | None = "transactions", *, regenerate: bool = False, **params: Any
    ) -> dict[str, Any]:
        """Start the report (or join the one these parameters already name); `kind=None`
        sends none (the service's default kind)."""
        body = {**({"kind": kind} if kind else {}), **params}
        body |= {"regenerate": True} if regenerate else {}
        doc: dict[str, Any] = _checked(await self._http.post("/reports", json=body)).json()
        return doc

    async def status(self, report_id: str, *, run_id: str | None = None) -> dict[str, Any]:
        return (await self.status_and_wait(report_id, run_id=run_id))[0]

    async def status_and_wait(
        self, report_id: str, *, run_id: str | None = None
    ) -> tuple[dict[str, Any], float]:
        """The status document and the seconds the API asks a poller to wait (`Retry-After`)."""
        response = _checked(
            await self._http.get(f"/reports/{report_id}", params=_run_params(run_id))
        )
        doc: dict[str, Any] = response.json()
        return doc, retry_after(response)

    async def status_events(
        self, report_id: str, *, run_id: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Each status document the report's event stream sends, as it changes; the
        stream ends after the final one (or early, when the connection does)."""
        timeout = httpx.Timeout(30.0, read=EVENTS_READ_TIMEOUT)
        connection = aconnect_sse(
            self._http,
            "GET",
            f"/reports/{report_id}/events",
            params=_run_params(run_id),
            timeout=timeout,
        )
        async with connection as source:
            if source.response.is_error:
                await source.response.aread()
                _checked(source.response)
            async for kind, data in sse_events(source.response):
                if kind == "status":
                    doc: dict[str, Any] = json.loads(data)
                    yield doc

    async def cancel(self, report_id: str) -> None:
        """Ask for the report to be cancelled (it stops asynchronously)."""
        _checked(await self._http.post(f"/reports/{report_id}/cancel"))

    async def follow(self, report_id: str, *, run_id: str | None = None) -> dict[str, Any]:
        """Poll as the API asks (`Retry-After`) until the report is final; its document.
        Bound the wait with `asyncio.timeout` around the call."""
        while True:
            doc, wait = await self.status_and_wait(report_id, run_id=run_id)
            if doc["status"] in FINAL:
                return doc
            await asyncio.sleep(min(wait or 1.0, 5.0))

    async def download(self, report_id: str, path: Path) -> int:
        """Save the completed report's file (any format) to `path`; its size."""
        redirect = _checked(await self._http.get(f"/reports/{report_id}/file"))
        # The signed URL needs no token (and may be another host: an S3 store).
        async with httpx.AsyncClient(base_url=self._http.base_url, timeout=60) as anonymous:
            file = _checked(await anonymous.get(redirect.headers["Location"]))
        await asyncio.to_thread(path.write_bytes, file.content)
        return len(file.content)
