"""Server-Sent Events: the status document on every change, closing after the final one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import MakeUser
from tests.utils.data import sample_transactions
from tests.utils.reportflow_http import last_90_days

pytestmark = pytest.mark.usefixtures("worker")


async def read_events(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[Any]:
    events: list[Any] = []
    async with http.stream("GET", path, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert kind == "status"
                events.append(json.loads(line.removeprefix("data: ")))
    return events


async def test_events_stream_each_stage_and_close_after_completion(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=2))
    created = await http.post("/reports", json={}, headers=user.headers)
    report_id = created.json()["report_id"]

    events = await read_events(http, f"/reports/{report_id}/events", user.headers)

    assert events, "at least the current status"
    assert events[-1]["status"] == "completed"
    assert all(e["report_id"] == report_id for e in events)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), "progress never goes back"
    assert len({json.dumps(e, sort_keys=True) for e in events}) == len(events), "only changes"
    # A finished report sends its final document once and closes.
    again = await read_events(http, f"/reports/{report_id}/events", user.headers)
    assert [e["status"] for e in again] == ["completed"]


async def test_events_of_another_users_report_are_404(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    owner, stranger = await make_user(), await make_user()
    report_id = (await http.post("/reports", json={}, headers=owner.headers)).json()["report_id"]
    response = await http.get(f"/reports/{report_id}/events", headers=stranger.headers)
    assert response.status_code == 404
