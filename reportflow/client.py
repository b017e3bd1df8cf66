"""A Python client for a product backend: request a report of any kind, follow it, download it.

    async with ReportflowClient("https://reports.example.com", token) as reports:
        doc = await reports.request("merchant-count", days=30)
        async with asyncio.timeout(600):
            done = await reports.follow(doc["report_id"])
        if done["status"] == "completed":
            await reports.download(doc["report_id"], Path("merchants.pdf"))

Only the HTTP API is used (no reportflow internals), so it works against any
deployment. Documents are the API's status documents, as dicts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

FINAL = {"completed", "failed", "cancelled"}


class ReportflowError(Exception):
    """The API refused a call; `detail` is its sentence for a person."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success or response.is_redirect:
        return response
    try:
        detail = str(response.json().get("detail"))
    except ValueError:
        detail = response.text
    raise ReportflowError(response.status_code, detail)


class ReportflowClient:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def __aenter__(self) -> ReportflowClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    async def kinds(self) -> list[dict[str, Any]]:
        """The kinds the service runs, with their parameters' JSON Schema."""
        kinds: list[dict[str, Any]] = _checked(await self._http.get("/kinds")).json()["kinds"]
        return kinds

    async def request(
        self, kind: str = "transactions", *, regenerate: bool = False, **params: Any
    ) -> dict[str, Any]:
        """Start the report (or join the one these parameters already name)."""
        body = {"kind": kind, **params, **({"regenerate": True} if regenerate else {})}
        doc: dict[str, Any] = _checked(await self._http.post("/reports", json=body)).json()
        return doc

    async def status(self, report_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = _checked(await self._http.get(f"/reports/{report_id}")).json()
        return doc

    async def follow(self, report_id: str) -> dict[str, Any]:
        """Poll as the API asks (`Retry-After`) until the report is final; its document.
        Bound the wait with `asyncio.timeout` around the call."""
        while True:
            response = _checked(await self._http.get(f"/reports/{report_id}"))
            doc: dict[str, Any] = response.json()
            if doc["status"] in FINAL:
                return doc
            await asyncio.sleep(min(float(response.headers.get("Retry-After", 1)), 5.0))

    async def download(self, report_id: str, path: Path) -> int:
        """Save the completed report's file (any format) to `path`; its size."""
        redirect = _checked(await self._http.get(f"/reports/{report_id}/file"))
        # The signed URL needs no token (and may be another host: an S3 store).
        async with httpx.AsyncClient(base_url=self._http.base_url, timeout=60) as anonymous:
            file = _checked(await anonymous.get(redirect.headers["Location"]))
        await asyncio.to_thread(path.write_bytes, file.content)
        return len(file.content)
