"""Who may see what, and bad input: a 4xx a person can act on, and nothing started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.client import Client

from tests.conftest import MakeUser, User
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.wait import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def today() -> datetime:
    return datetime.now(UTC)


async def count_user_runs(client: Client, user: User) -> int:
    return (await client.count_workflows(f"ReportUserId = '{user.id}'")).count


async def test_requests_without_a_valid_token_get_401(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        for method, path in (("POST", "/reports"), ("GET", "/reports"), ("GET", "/reports/x")):
            response = await http.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert "reportflow token create" in response.json()["detail"]


async def test_another_users_report_is_404_like_a_missing_one(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    owner, stranger = await make_user(), await make_user()
    created = await http.post("/reports", json={}, headers=owner.headers)
    report_id = created.json()["report_id"]
    await wait_status(http, owner, report_id, FINAL)

    for path in ("", "/pdf"):
        theirs = await http.get(f"/reports/{report_id}{path}", headers=stranger.headers)
        missing = await http.get(f"/reports/{report_id}-nope{path}", headers=stranger.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
    cancel = await http.post(f"/reports/{report_id}/cancel", headers=stranger.headers)
    assert cancel.status_code == 404
    listed = await http.get("/reports", headers=stranger.headers)
    assert listed.json()["reports"] == []
    # The owner still sees it.
    assert (await http.get(f"/reports/{report_id}", headers=owner.headers)).status_code == 200


def _bad_bodies() -> list[tuple[object, str]]:
    now = today().date()
    return [
        ({"start": "2026-13-01"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"start": str(now), "end": str(now - timedelta(days=1))}, "after end"),
        ({"start": str(now - timedelta(days=400)), "end": str(now)}, "at most 366"),
        ({"end": str(now + timedelta(days=1))}, "future"),
        ({"start": str(now + timedelta(days=2)), "end": str(now + timedelta(days=3))}, "future"),
        ({"user_id": "u0001"}, "user_id"),
        ({"email": "attacker@example.com"}, "email"),
        ({"recipient": "attacker@example.com"}, "recipient"),
        ({"regenerate": "please"}, "regenerate"),
        ([], "object"),
        ("not json", ""),
    ]


@pytest.mark.parametrize(("body", "hint"), _bad_bodies())
async def test_bad_range_gets_422_with_a_reason_and_starts_nothing(
    http: httpx.AsyncClient, make_user: MakeUser, temporal_client: Client, body: object, hint: str
) -> None:
    user = await make_user()
    if isinstance(body, str):
        response = await http.post(
            "/reports", content=body, headers={**user.headers, "Content-Type": "application/json"}
        )
    else:
        response = await http.post("/reports", json=body, headers=user.headers)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and hint in detail
    await assert_nothing_started(http, user, temporal_client)


async def assert_nothing_started(http: httpx.AsyncClient, user: User, client: Client) -> None:
    """A valid request afterwards shows up as the user's only run."""
    ok = await http.post("/reports", json={}, headers=user.headers)
    assert ok.status_code == 202
    await wait_until(lambda: count_user_runs(client, user), lambda n: n >= 1, what="visibility")
    assert await count_user_runs(client, user) == 1


async def test_oversized_body_gets_413(
    http: httpx.AsyncClient, make_user: MakeUser, temporal_client: Client
) -> None:
    user = await make_user()
    big = '{"start": "2026-01-01", "pad": "' + "x" * 100_000 + '"}'
    response = await http.post(
        "/reports", content=big, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "smaller" in response.json()["detail"]

    async def chunks() -> object:
        for _ in range(20):
            yield b"x" * 4096

    streamed = await http.post("/reports", content=chunks(), headers=user.headers)  # type: ignore[arg-type]
    assert streamed.status_code == 413
    await assert_nothing_started(http, user, temporal_client)


async def test_too_many_requests_get_429_with_retry_after(
    http: httpx.AsyncClient, make_user: MakeUser, settings: object
) -> None:
    user = await make_user()
    limit = settings.rate_limit_per_minute  # type: ignore[attr-defined]
    day = today().date()
    codes = []
    for n in range(limit + 1):
        start = day - timedelta(days=n + 1)
        response = await http.post(
            "/reports", json={"start": str(start), "end": str(start)}, headers=user.headers
        )
        codes.append(response.status_code)
    assert codes[:limit] == [202] * limit
    assert codes[limit] == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "try again" in response.json()["detail"]


async def test_malformed_ids_and_queries_are_4xx(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    for path in ("/reports/%00", "/reports/" + "a" * 5000, "/reports/report-x-1-2-3/pdf"):
        assert (await http.get(path, headers=user.headers)).status_code == 404
    for query in ("status=bogus", "page_size=0", "page_size=101", "page_token=%%%"):
        response = await http.get(f"/reports?{query}", headers=user.headers)
        assert response.status_code == 422, query


async def test_pdf_before_completion_is_409(http: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    created = await http.post("/reports", json={}, headers=user.headers)
    report_id = created.json()["report_id"]
    early = await http.get(f"/reports/{report_id}/pdf", headers=user.headers)
    done = await wait_status(http, user, report_id, FINAL)
    if done["completed_at"] and early.status_code == 200:
        pytest.skip("the report finished before the first request could see it running")
    assert early.status_code == 409
    assert "completed" in early.json()["detail"]


async def test_body_that_is_not_utf8_json_gets_400_saying_what_to_send(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await http.post(
        "/reports",
        content=b"\xff\xfe{",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.json()["detail"]


async def test_wrong_method_gets_405_listing_every_allowed_one(http: httpx.AsyncClient) -> None:
    response = await http.delete("/reports")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


async def test_forged_page_token_gets_422_without_reaching_temporal(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await http.get(
        "/reports?page_token=AAAAAAAAAAAAAAAAAAAAAAAAAAAA", headers=user.headers
    )
    assert response.status_code == 422
    assert "page_token" in response.json()["detail"]
