"""Untrusted merchant names through the whole pipeline: shown as text, never fetched."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, time, timedelta

import httpx
import pytest

from tests.conftest import MakeUser
from tests.utils.listener import Listener, hostile_strings
from tests.utils.reportflow_http import FINAL, download_pdf, pdf_text, wait_status

pytestmark = pytest.mark.usefixtures("worker")


async def test_hostile_merchant_names_are_text_and_reach_nothing(
    http: httpx.AsyncClient, make_user: MakeUser, listener: Listener
) -> None:
    day = datetime.combine(datetime.now(UTC).date() - timedelta(days=3), time(12))
    names = hostile_strings(listener)
    user = await make_user(
        [(day, -1000 - i, name, "Shopping") for i, name in enumerate(names.values())]
    )

    created = await http.post("/reports", json={}, headers=user.headers)
    done = await wait_status(http, user, created.json()["report_id"], FINAL)
    assert done["status"] == "completed", done
    pdf = await download_pdf(http, user, done["report_id"])

    # Any fetch would have happened while Chromium printed, before the report completed.
    assert listener.hits == 0, listener.paths
    # NFKC: fonts with ligatures extract "file" as "ﬁle".
    flat = " ".join(unicodedata.normalize("NFKC", pdf_text(pdf)).split())
    assert "iframe src=file:///etc/passwd" in flat
    assert "link rel=prefetch" in flat
    assert "meta http-equiv=refresh" in flat
    assert "root:x:0:0" not in flat
