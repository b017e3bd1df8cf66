"""EMAIL_RATE_PER_SECOND holds across workers: Temporal's task-queue rate limit on
the email step's own queue, not a per-process counter (figures printed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from temporalio.client import Client

from reportflow.core.temporal import with_codec
from tests.utils.reportflow_http import FINAL, report_id_for, wait_status
from tests.utils.service import stack
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker

log = logging.getLogger(__name__)


def busiest(times: list[float], window: float) -> int:
    """The most messages seen within any `window` seconds."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + window) for start in times), default=0)


async def test_two_workers_send_at_most_the_rate_and_each_email_once(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    # Well below what two workers render, even on a loaded machine (one full-suite
    # run rendered only ~1/s, and at a limit of 1/s no email ever had to wait), so
    # emails do queue for their turn.
    rate, count = 0.5, 16
    async with (
        stack(tmp_path, smtp, temporal_client, worker=False, email_rate_per_second=rate) as s,
        contextlib.AsyncExitStack() as workers,
    ):
        # Two workers, each with its own client (one client may not run two workers
        # on one task queue), as two processes would.
        address = temporal_client.service_client.config.target_host
        for _ in range(2):
            client = with_codec(await Client.connect(address), s.settings)
            await workers.enter_async_context(in_process_worker(s.settings, client))
        users = [await s.user() for _ in range(count)]
        responses = await asyncio.gather(
            *(s.http.post("/reports", json={}, headers=u.headers) for _, u in users)
        )
        assert all(r.status_code == 202 for r in responses)

        seen_waiting = False

        async def watch() -> None:
            nonlocal seen_waiting
            while not seen_waiting:
                for user_id, user in users:
                    doc = (
                        await s.http.get(f"/reports/{report_id_for(user_id)}", headers=user.headers)
                    ).json()
                    if doc["stage"] == "emailing" and "turn to send" in (doc["waiting"] or ""):
                        seen_waiting = True
                        break
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        for user_id, user in users:
            doc = await wait_status(s.http, user, report_id_for(user_id), FINAL, timeout=180)
            assert doc["status"] == "completed", doc
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    addresses = {f"{user_id}@example.com" for user_id, _ in users}
    received = [r for r in smtp.handler.received if set(r.rcpt_tos) & addresses]
    per_user = {a: sum(1 for r in received if a in r.rcpt_tos) for a in addresses}
    assert set(per_user.values()) == {1}, per_user
    times = sorted(r.at for r in received)
    span = times[-1] - times[0]
    # Temporal's limiter is a token bucket: after a lull it lets a burst through
    # (about 5 here), and otherwise holds the rate (arrivals 1 s apart at 1/s).
    # So no window of W seconds sees more than rate * W + burst.
    burst = 6
    windows = {w: busiest(times, w) for w in (1.0, 2.0, 5.0, 10.0)}
    log.warning(
        "email rate %g/s, 2 workers, %d reports: sent over %.1f s; busiest windows %s; arrivals %s",
        rate,
        count,
        span,
        {f"{w:g}s": n for w, n in windows.items()},
        [round(t - times[0], 2) for t in times],
    )
    for window, seen in windows.items():
        assert seen <= rate * window + burst, (window, seen)
    # And so the whole lot cannot leave faster than the bucket refills.
    assert span >= (count - burst) / rate, span
    assert seen_waiting, "no report said it was waiting for its turn to send"
