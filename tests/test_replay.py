"""The workflow code must replay the histories of its own runs.

`tests/histories/<version>-<outcome>.json` are histories of real runs saved from
the current GenerateReport, one per branch of `run()`: completed, failed (at the
query and at the email), cancelled (by `handle.cancel()`, while queued, while
rendering, and too late, while emailing). A change that breaks determinism for
them fails here instead of in production.

Only the current code's histories are kept: workers run with Worker Versioning and
pin every run to the build that started it, so a new build never replays an older
build's history (docs/operating.md, Deploys). A change to the workflow therefore
saves a new set and deletes the old one, in the same commit:
`RECORD_HISTORIES=v9 pytest tests/test_replay.py -k fresh`, then remove `v8-*`
and bump CURRENT below. (A change that must reach running runs is a registered
patch instead: reportflow/workflows/patches.py; its old histories stay until the
patch is removed.)
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import httpx
import pytest
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from reportflow.workflows.generate_report import GenerateReport
from tests.conftest import MakeUser
from tests.utils.payloads import decode_history
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.service import stack
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_for, wait_until

HISTORIES = Path(__file__).parent / "histories"


def saved_histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", saved_histories(), ids=lambda p: p.stem)
async def test_saved_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=[GenerateReport]).replay_workflow(history)


CURRENT = "v9"
BRANCHES = {
    "completed",
    "failed",
    "failed-at-email",
    "cancelled",
    "cancel-while-emailing",
    "cancel-while-rendering",
    "cancel-while-queued",
}


def test_histories_are_saved() -> None:
    """One history per branch, all from the current code's set."""
    names = {p.stem for p in saved_histories()}
    assert names == {f"{CURRENT}-{branch}" for branch in BRANCHES}


async def _cancel_branches(tmp_path: Path, smtp: SmtpServer, client: Client) -> dict[str, str]:
    """A run cancelled (by the API's update) while it renders, and one while it waits
    for a slot of its user (one slot each here), on a service of their own."""
    async with stack(tmp_path, smtp, client, max_running_reports_per_user=1) as s:
        user_id, user = await s.user()
        ranges = [(date(2026, 3, d), date(2026, 3, d + 6)) for d in (1, 8)]
        rendering, queued = (f"report-{user_id}-{a}-{b}" for a, b in ranges)
        with s.hold_render(rendering):
            for a, b in ranges:
                body = {"start": str(a), "end": str(b)}
                assert (await s.http.post("/reports", json=body, headers=user.headers)).is_success

            async def stages() -> list[str]:
                docs = [
                    (await s.http.get(f"/reports/{r}", headers=user.headers)).json()
                    for r in (rendering, queued)
                ]
                return [d["stage"] for d in docs]

            await wait_until(stages, lambda got: got == ["rendering", "queued"], what="stages")
            for report_id in (queued, rendering):
                cancel = await s.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
                assert cancel.status_code == 202, cancel.text
                done = await wait_status(s.http, user, report_id, FINAL)
                assert done["status"] == "cancelled", (done.get("error"), done.get("stage"))
    return {"cancel-while-rendering": rendering, "cancel-while-queued": queued}


@pytest.mark.usefixtures("worker")
async def test_fresh_histories_replay(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    """Completed, failed and cancelled runs of the current code replay (and can be saved)."""
    runs = {}
    completed = await make_user()
    runs["completed"] = (await http.post("/reports", json={}, headers=completed.headers)).json()
    await wait_status(http, completed, runs["completed"]["report_id"], FINAL)

    failed = await make_user(email=None)
    runs["failed"] = (await http.post("/reports", json={}, headers=failed.headers)).json()
    await wait_status(http, failed, runs["failed"]["report_id"], FINAL)

    failed_at_email = await make_user()
    smtp.refuse(1000, "550 5.1.1 Mailbox unavailable", to=failed_at_email.email)
    runs["failed-at-email"] = (
        await http.post("/reports", json={}, headers=failed_at_email.headers)
    ).json()
    await wait_status(http, failed_at_email, runs["failed-at-email"]["report_id"], FINAL)

    cancelled = await make_user()
    runs["cancelled"] = (await http.post("/reports", json={}, headers=cancelled.headers)).json()
    await temporal_client.get_workflow_handle(runs["cancelled"]["report_id"]).cancel()
    assert (await wait_status(http, cancelled, runs["cancelled"]["report_id"], FINAL))[
        "status"
    ] == "cancelled"

    late = await make_user()
    smtp.stall_after_data(1, seconds=2.0, to=late.email)
    runs["cancel-while-emailing"] = (
        await http.post("/reports", json={}, headers=late.headers)
    ).json()
    await wait_for(lambda: bool(smtp.attempts_to(late.email or "")), what="sending")
    await temporal_client.get_workflow_handle(runs["cancel-while-emailing"]["report_id"]).cancel()
    assert (await wait_status(http, late, runs["cancel-while-emailing"]["report_id"], FINAL))[
        "status"
    ] == "completed"
    smtp.reset()
    branches = await _cancel_branches(tmp_path, smtp, temporal_client)
    runs.update({name: {"report_id": report_id} for name, report_id in branches.items()})

    # Histories are encrypted: the replayer reads them with the suite's codec, and
    # they are saved decrypted, so the saved ones replay with any key.
    replayer = Replayer(workflows=[GenerateReport], data_converter=temporal_client.data_converter)
    codec = temporal_client.data_converter.payload_codec
    assert codec is not None
    for name, doc in runs.items():
        history = await temporal_client.get_workflow_handle(doc["report_id"]).fetch_history()
        await replayer.replay_workflow(history)
        version = os.environ.get("RECORD_HISTORIES")
        if version:
            raw = History(events=history.events)
            await decode_history(raw, codec)
            saved = WorkflowHistory(history.workflow_id, raw.events)
            await Replayer(workflows=[GenerateReport]).replay_workflow(saved)
            HISTORIES.mkdir(exist_ok=True)
            (HISTORIES / f"{version}-{name}.json").write_text(saved.to_json())
