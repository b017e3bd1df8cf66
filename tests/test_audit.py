"""Audit lines for what an admin reads: a download of another user's PDF."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.tokens import create_token
from tests.conftest import MakeUser
from tests.utils.reportflow_http import FINAL, Bearer, wait_status


@pytest.mark.usefixtures("worker")
async def test_an_admins_download_of_a_users_pdf_is_audited(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    app_engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reportflow.core.audit")
    user = await make_user()
    admin = Bearer(await create_token(app_engine, admin=True))
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "completed"

    # The owner's own download is no admin action.
    assert (await http.get(f"/reports/{report_id}/pdf", headers=user.headers)).status_code == 303
    assert [r for r in caplog.records if r.name == "reportflow.core.audit"] == []

    for path in (f"/reports/{report_id}/pdf", f"/reports/{report_id}/pdf/link"):
        answer = await http.get(path, headers=admin.headers)
        assert answer.status_code in {200, 303}, (path, answer.text)
    lines = [r for r in caplog.records if r.name == "reportflow.core.audit"]
    assert [(r.action, r.target, r.owner) for r in lines] == [  # type: ignore[attr-defined]
        ("download pdf", report_id, user.id),
        ("download pdf", report_id, user.id),
    ]
    assert all(r.actor.endswith("(admin)") for r in lines)  # type: ignore[attr-defined]
