"""Schedules an outsider could abuse: MAX_SCHEDULES_PER_USER, creation rate
limited, and a backfill's reports counted against the same per-user start
limit as POST /reports (on the real API and Temporal)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from tests.utils.service import stack
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

WEEKLY = {"every": "week", "day": "monday", "time": "06:00", "timezone": "UTC"}


async def test_schedules_are_capped_and_a_backfill_counts_as_starts(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    # No worker: the backfilled runs wait on this stack's own task queue.
    async with stack(
        tmp_path,
        smtp,
        temporal_client,
        worker=False,
        max_schedules_per_user=2,
        rate_limit_per_minute=4,
        create_rate_per_minute=5,
    ) as s:
        _, user = await s.user()
        made: list[str] = []
        try:
            first = await s.http.post(
                "/schedules", json={**WEEKLY, "backfill": 3}, headers=user.headers
            )
            assert first.status_code == 201, first.text
            made.append(first.json()["id"])
            # Three of the four starts a minute went to the backfill: one is left.
            report = await s.http.post("/reports", json={}, headers=user.headers)
            assert report.status_code == 202, report.text
            backfill = await s.http.post(
                "/schedules", json={**WEEKLY, "backfill": 1}, headers=user.headers
            )
            assert backfill.status_code == 429, backfill.text
            assert "backfill" in backfill.json()["detail"]
            assert int(backfill.headers["retry-after"]) >= 1

            second = await s.http.post("/schedules", json=WEEKLY, headers=user.headers)
            assert second.status_code == 201, second.text
            made.append(second.json()["id"])
            # The cap is counted from visibility: wait until both are listed.
            await wait_until(
                lambda: s.http.get("/schedules", headers=user.headers),
                lambda r: len(r.json()) == 2,
                timeout=30,
                what="both schedules listed",
            )
            third = await s.http.post("/schedules", json=WEEKLY, headers=user.headers)
            assert third.status_code == 409, third.text
            assert "2 schedules, the most one user may hold" in third.json()["detail"]

            # Creations have a budget of their own: five a minute, the refused ones counted.
            await s.http.delete(f"/schedules/{made.pop()}", headers=user.headers)
            await wait_until(
                lambda: s.http.get("/schedules", headers=user.headers),
                lambda r: len(r.json()) == 1,
                timeout=30,
                what="the deleted schedule gone from the list",
            )
            again = await s.http.post("/schedules", json=WEEKLY, headers=user.headers)
            assert again.status_code == 201, again.text
            made.append(again.json()["id"])
            limited = await s.http.post("/schedules", json=WEEKLY, headers=user.headers)
            assert limited.status_code == 429, limited.text
            assert "too many schedules created" in limited.json()["detail"]
        finally:
            for schedule_id in made:
                await s.http.delete(f"/schedules/{schedule_id}", headers=user.headers)
