"""GET /reports: the caller's reports, newest first, filtered and paginated."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.conftest import MakeUser
from tests.utils.reportflow_http import FINAL, last_90_days, wait_status
from tests.utils.wait import wait_until

pytestmark = pytest.mark.usefixtures("worker")


async def test_list_is_newest_first_filtered_and_paginated(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    _, end = last_90_days()
    ids = []
    for days in (10, 20, 30):
        body = {"start": str(end - timedelta(days=days)), "end": str(end)}
        ids.append(
            (await http.post("/reports", json=body, headers=user.headers)).json()["report_id"]
        )
    for report_id in ids:
        await wait_status(http, user, report_id, FINAL)

    listed = await wait_until(
        lambda: http.get("/reports?status=completed", headers=user.headers),
        lambda r: len(r.json()["reports"]) == 3,
        what="three completed reports in the list",
    )
    assert [d["report_id"] for d in listed.json()["reports"]] == ids[::-1]

    first = (await http.get("/reports?page_size=2", headers=user.headers)).json()
    assert len(first["reports"]) == 2 and first["next_page_token"]
    second = (
        await http.get(
            "/reports",
            params={"page_size": 2, "page_token": first["next_page_token"]},
            headers=user.headers,
        )
    ).json()
    paged = [d["report_id"] for d in first["reports"] + second["reports"]]
    assert sorted(paged) == sorted(ids), "every report exactly once across the pages"
    assert (await http.get("/reports?status=failed", headers=user.headers)).json()["reports"] == []
