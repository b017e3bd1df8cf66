"""PDF downloads through the file store: 303 to a link the API signed with
SECRET_KEY, which works with no token until it expires and only for its report."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
from temporalio.client import Client

from reportflow.core.config import Settings
from reportflow.core.signing import signature
from tests.conftest import MakeUser
from tests.utils.data import sample_transactions
from tests.utils.reportflow_http import FINAL, download_pdf, last_90_days, wait_status


async def _completed(http: httpx.AsyncClient, make_user: MakeUser) -> tuple[str, str, str]:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 30, 3))
    created = await http.post("/reports", headers=user.headers)
    report_id = created.json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL)
    assert done["status"] == "completed", done
    redirect = await http.get(f"/reports/{report_id}/pdf", headers=user.headers)
    assert redirect.status_code == 303
    return report_id, done["run_id"], redirect.headers["Location"]


async def test_signed_link_serves_the_pdf_without_a_token(
    http: httpx.AsyncClient, make_user: MakeUser, worker: None, settings: Settings
) -> None:
    report_id, run_id, location = await _completed(http, make_user)
    parts = urlsplit(location)
    assert parts.path == f"/reports/{report_id}/pdf/download"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["key"] == f"{report_id}/{run_id}.pdf"
    assert 0 < int(query["expires"]) - time.time() <= settings.download_link_seconds

    response = await http.get(location)  # no Authorization header
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert response.headers["content-disposition"] == f'attachment; filename="{report_id}.pdf"'


async def test_tampered_expired_or_borrowed_links_are_403(
    http: httpx.AsyncClient, make_user: MakeUser, worker: None, settings: Settings
) -> None:
    report_id, _, location = await _completed(http, make_user)
    other_id, _, _ = await _completed(http, make_user)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    key, expires, sig = query["key"], int(query["expires"]), query["sig"]
    past = int(time.time()) - 1
    bad = {
        "tampered": (report_id, key, expires, sig[:-2] + "AA"),
        "longer": (report_id, key, expires + 3600, sig),
        "not ascii": (report_id, key, expires, "é" * 43),
        "expired": (report_id, key, past, signature(settings.secret_key, report_id, key, past)),
        "other report": (other_id, key, expires, sig),
        "other key": (report_id, f"{other_id}.pdf", expires, sig),
        "other secret": (
            report_id,
            key,
            expires,
            signature("not-the-secret", report_id, key, expires),
        ),
    }
    for why, (rid, k, e, s) in bad.items():
        response = await http.get(
            f"/reports/{rid}/pdf/download", params={"key": k, "expires": e, "sig": s}
        )
        assert response.status_code == 403, (why, response.text)
        assert "GET /reports/" in response.json()["detail"]


async def test_pdf_link_as_json_and_other_users_get_404(
    http: httpx.AsyncClient, make_user: MakeUser, worker: None, temporal_client: Client
) -> None:
    start, _ = last_90_days()
    owner = await make_user(sample_transactions(start, 20, 5))
    created = await http.post("/reports", headers=owner.headers)
    report_id = created.json()["report_id"]
    await wait_status(http, owner, report_id, FINAL)
    link = await http.get(f"/reports/{report_id}/pdf/link", headers=owner.headers)
    assert link.status_code == 200
    assert link.json()["url"].startswith(f"/reports/{report_id}/pdf/download?")
    assert (await http.get(link.json()["url"])).status_code == 200
    assert await download_pdf(http, owner, report_id)

    stranger = await make_user()
    for path in ("/pdf", "/pdf/link"):
        response = await http.get(f"/reports/{report_id}{path}", headers=stranger.headers)
        assert response.status_code == 404
