"""`reportflow dlq redrive` and `reportflow reports cancel` (old name `dlq cancel`) with
filters: counted first, done only with --yes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from reportflow.core.tokens import create_token
from reportflow_dev.testing import settings_env
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, latest_run, wait_status
from tests.utils.service import Stack, stack
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until


@pytest.fixture(scope="module")
async def ops(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, temporal_client: Client
) -> AsyncIterator[Stack]:
    async with stack(tmp_path_factory.mktemp("bulk"), smtp, temporal_client) as s:
        yield s


async def dlq(s: Stack, client: Client, *args: str) -> tuple[int, str]:
    return await command(s, client, "dlq", *args)


async def command(s: Stack, client: Client, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        *args,
        env=settings_env(s.settings, client.service_client.config.target_host),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def _audit(out: str, action: str) -> list[dict[str, Any]]:
    """The command's audit lines (JSON logs on its stderr) of one action."""
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("action") == action]


async def _failed(s: Stack, user_id: str, user: Bearer, day: int) -> str:
    body = {"start": str(date(2026, 2, day)), "end": str(date(2026, 2, day + 1))}
    report_id: str = (await s.http.post("/reports", json=body, headers=user.headers)).json()[
        "report_id"
    ]
    doc = await wait_status(s.http, user, report_id, FINAL)
    assert doc["status"] == "failed", doc
    return report_id


async def test_redrive_by_user_and_reason_counts_then_acts_with_yes(
    ops: Stack, temporal_client: Client
) -> None:
    # Two users with no email address: their reports fail with NoEmailAddress.
    users = []
    for _ in range(2):
        user_id = await create_user(ops.engine, email=None)
        users.append((user_id, Bearer(await create_token(ops.engine, user_id=user_id))))
    (target, target_user), (other, other_user) = users
    mine = [await _failed(ops, target, target_user, d) for d in (1, 3)]
    theirs = await _failed(ops, other, other_user, 1)
    runs = {r: await latest_run(temporal_client, r) for r in [*mine, theirs]}

    # Counted (visibility may lag a moment), listed, and nothing done without --yes.
    code, out = await wait_until(
        lambda: dlq(ops, temporal_client, "redrive", "--user", target),
        lambda result: "2 failed reports match" in result[1],
        what="both failed reports counted",
    )
    assert code == 0 and all(r in out for r in mine) and theirs not in out
    assert "add --yes" in out
    assert {r: await latest_run(temporal_client, r) for r in runs} == runs

    code, out = await dlq(ops, temporal_client, "redrive", "--user", target, "--reason", "Nope")
    assert "0 failed reports match" in out

    code, out = await dlq(
        ops, temporal_client, "redrive", "--user", target, "--reason", "NoEmailAddress", "--yes"
    )
    assert code == 0 and "redriven: 2" in out, out
    bulk, each = _audit(out, "bulk redrive"), _audit(out, "redrive")
    assert len(bulk) == 1 and sorted(bulk[0]["report_ids"]) == sorted(mine)
    assert sorted(line["target"] for line in each) == sorted(mine)
    assert all(line["actor"].startswith("os-user ") for line in [*bulk, *each])
    for report_id in mine:
        assert await latest_run(temporal_client, report_id) != runs[report_id]
    assert await latest_run(temporal_client, theirs) == runs[theirs]


async def test_cancel_by_user_is_one_batch_and_needs_yes(
    ops: Stack, temporal_client: Client, tmp_path: Path
) -> None:
    user_id, user = await ops.user()
    other_id, other = await ops.user()
    ranges = [(date(2026, 3, d), date(2026, 3, d + 1)) for d in (1, 5)]
    ids = [f"report-{user_id}-{a}-{b}" for a, b in ranges]
    other_report = f"report-{other_id}-{ranges[0][0]}-{ranges[0][1]}"
    holds = [ops.hold_render(r) for r in [*ids, other_report]]
    for hold in holds:
        hold.__enter__()
    try:
        for a, b in ranges:
            body = {"start": str(a), "end": str(b)}
            assert (
                await ops.http.post("/reports", json=body, headers=user.headers)
            ).status_code == 202
        body = {"start": str(ranges[0][0]), "end": str(ranges[0][1])}
        assert (
            await ops.http.post("/reports", json=body, headers=other.headers)
        ).status_code == 202

        code, out = await wait_until(
            lambda: command(ops, temporal_client, "reports", "cancel", "--user", user_id),
            lambda result: "2 running reports match" in result[1],
            what="both running reports counted",
        )
        assert "add --yes" in out and other_report not in out
        # The old name still works, and says so once.
        code, out = await dlq(
            ops, temporal_client, "cancel", "--user", user_id, "--reason", "test", "--yes"
        )
        assert code == 0 and "cancel requested: 2 of 2" in out, out
        assert out.count("dlq cancel is deprecated") == 1, out
        (line,) = _audit(out, "bulk cancel")
        assert sorted(line["report_ids"]) == sorted(ids) and line["note"] == "test"
        for report_id in ids:
            doc = await wait_status(ops.http, user, report_id, FINAL)
            assert doc["status"] == "cancelled", doc
        doc = (await ops.http.get(f"/reports/{other_report}", headers=other.headers)).json()
        assert doc["status"] in {"queued", "running"}, doc
    finally:
        for hold in holds:
            hold.__exit__(None, None, None)
    await wait_status(ops.http, other, other_report, FINAL)
