"""Report kinds on real components: the registry, the built-in kinds, and a team's kind
installed from outside the package (examples/merchant_count) through every surface."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from reportflow.activities.kind import query_context, read_only_engine
from reportflow.client import ReportflowClient, ReportflowError
from reportflow.contract import DateRange
from reportflow.core.config import Settings
from reportflow.core.db import transactions
from reportflow.core.temporal import USER_ID_KEY
from reportflow.core.tokens import create_token
from reportflow.kinds import KindError, ReportKind, load_kinds
from reportflow.models import WORKFLOW_TYPE
from reportflow.report.builtin_kinds import CSV_COLUMNS, export_statement, transactions_csv
from reportflow.report.csv_export import crlf
from reportflow.service.reports import KindRequest
from reportflow.service.schedules import previous_period
from reportflow_dev.testing import in_process_worker, serve_api, settings_env
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import FINAL, last_90_days, pdf_text, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

EXAMPLE = Path(__file__).parents[1] / "examples" / "merchant_count"
ROOT = Path(__file__).parents[1]


# --------------------------------------------------------------------------- registry


@pytest.fixture
def team_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A team's module on sys.path, outside the package."""
    (tmp_path / "team_kinds.py").write_text(
        "from pydantic import BaseModel\n"
        "from reportflow.kinds import ReportKind\n"
        "class P(BaseModel):\n    n: int = 1\n"
        "async def q(ctx, params):\n    return {}\n"
        "ok = ReportKind(name='team-ok', title='OK', params=P, query=q,\n"
        "    render=lambda d, p: b'', format='txt')\n"
        "clash = ReportKind(name='transactions', title='Clash', params=P, query=q,\n"
        "    render=lambda d, p: b'', format='txt')\n"
        "not_kind = 42\n"
    )
    (tmp_path / "team_broken.py").write_text("raise ImportError('no module named warehouse')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "team_kinds"


def test_registry_holds_the_built_in_kinds_and_a_teams_module(team_module: str) -> None:
    kinds = load_kinds(f"{team_module}:ok")
    assert list(kinds) == ["transactions", "transactions-csv", "team-ok"]
    assert kinds["transactions-csv"].content_type == "text/csv"
    assert "team_kinds:ok" in kinds.origin("team-ok")


def test_registry_finds_a_kind_in_an_installed_packages_entry_points(
    team_module: str, tmp_path: Path
) -> None:
    """A tiny installed distribution (its dist-info on sys.path) names the kind."""
    dist = tmp_path / "team_reports-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: team-reports\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reportflow.report_kinds]\nteam-ok = team_kinds:ok\n")
    kinds = load_kinds()
    assert "team-ok" in kinds
    assert "entry point 'team-ok'" in kinds.origin("team-ok")
    with pytest.raises(KindError, match="already registered by entry point 'team-ok'"):
        load_kinds("team_kinds:ok")  # the same kind twice is a mistake worth stopping for


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("team_kinds", "module:attribute"),
        ("no_such_team_module:kind", "module 'no_such_team_module' could not be imported"),
        ("team_broken:kind", "no module named warehouse"),
        ("team_kinds:missing", "module 'team_kinds' has no attribute 'missing'"),
        ("team_kinds:not_kind", "is a int, not a reportflow.kinds.ReportKind"),
        ("team_kinds:clash", "'transactions' is already registered by reportflow (built in)"),
    ],
)
def test_registry_error_names_the_module_and_what_is_wrong(
    team_module: str, setting: str, says: str
) -> None:
    with pytest.raises(KindError) as raised:
        load_kinds(setting)
    assert says in str(raised.value)


class _P(BaseModel):
    days: int = 30


async def _q(ctx: object, params: _P) -> dict[str, Any]:
    return {}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "Merchant Count"}, "lower-case words joined by hyphens"),
        ({"render": None}, "exactly one of template, render or export"),
        ({"template": Path("/nonexistent.j2"), "render": None, "format": "pdf"}, "is not a file"),
        ({"params": dict}, "pydantic model class"),
    ],
)
def test_a_wrong_kind_is_refused_when_built(changes: dict[str, Any], says: str) -> None:
    values: dict[str, Any] = {"name": "m", "title": "M", "params": _P, "query": _q,
                              "render": lambda d, p: b"", "format": "txt"}  # fmt: skip
    with pytest.raises(KindError, match=says):
        ReportKind(**{**values, **changes})


def test_equal_parameters_name_the_same_report() -> None:
    kind = ReportKind(name="m", title="M", params=_P, query=_q, render=lambda d, p: b"",
                      format="txt")  # fmt: skip
    default = KindRequest.of(kind, kind.parse({})).report_id("u1")
    assert default == KindRequest.of(kind, kind.parse({"days": 30})).report_id("u1")
    assert default == KindRequest.of(kind, kind.parse({"days": "30"})).report_id("u1")
    assert default != KindRequest.of(kind, kind.parse({"days": 31})).report_id("u1")
    assert default != KindRequest.of(kind, kind.parse({})).report_id("u2")
    assert re.fullmatch(r"report-u1-m-[0-9a-f]{12}", default)


# --------------------------------------------------------------------------- built-in kinds


async def test_a_run_started_with_the_input_of_before_kinds_completes(
    worker: None,
    settings: Settings,
    temporal_client: Client,
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
) -> None:
    """A run an older API started (its input has no kind) completes on this worker."""
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=11))
    report_id = f"report-{user.id}-{start}-{end}"
    old_input = {
        "report_id": report_id,
        "user_id": user.id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "retry": {"query": {}, "render": {}, "email": {}},
        "timeouts": {"query": 10, "render": 30, "render_heartbeat": 5, "email": 10},
        "recipients": [],
    }
    await temporal_client.start_workflow(
        WORKFLOW_TYPE,
        old_input,
        id=report_id,
        task_queue=settings.task_queue,
        memo={"user_id": user.id, "start": str(start), "end": str(end), "stage": "queued"},
        search_attributes=TypedSearchAttributes([SearchAttributePair(USER_ID_KEY, user.id)]),
    )
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert done["status"] == "completed", done
    assert (done["kind"], done["format"], done["title"]) == (
        "transactions",
        "pdf",
        "Transaction report",
    )
    assert done["result"]["pdf_url"] == f"/reports/{report_id}/pdf"
    message = await smtp.wait_for_message(user.email or "")
    assert [a.get_content_type() for a in message.iter_attachments()] == ["application/pdf"]


async def test_kinds_lists_each_kind_with_its_parameters_schema(
    api_url: str, http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    assert (await http.get("/kinds")).status_code == 401
    listed = (await http.get("/kinds", headers=user.headers)).json()["kinds"]
    by_name = {k["name"]: k for k in listed}
    assert by_name["transactions"]["default"] is True
    assert by_name["transactions"]["format"] == "pdf"
    csv_kind = by_name["transactions-csv"]
    assert (csv_kind["format"], csv_kind["content_type"]) == ("csv", "text/csv")
    assert set(csv_kind["params"]["properties"]) == {"start", "end"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"kind": "no-such-kind"}, "unknown report kind 'no-such-kind'"),
        ({"kind": 7}, "unknown report kind 7"),
        ({"kind": "transactions-csv", "start": "2026-13-01"}, "start"),
        ({"kind": "transactions-csv", "rows": 5}, "rows"),
        ({"kind": "transactions-csv", "regenerate": "yes"}, "regenerate"),
        ({"kind": "transactions", "strat": "2026-01-01"}, "strat"),
    ],
)
async def test_unknown_kind_or_bad_parameters_get_422_naming_it_and_start_nothing(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    temporal_client: Client,
    body: dict[str, Any],
    says: str,
) -> None:
    user = await make_user()
    response = await http.post("/reports", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]
    count = await temporal_client.count_workflows(f"ReportUserId = '{user.id}'")
    assert count.count == 0


async def _download(
    http: httpx.AsyncClient, headers: dict[str, str], report_id: str
) -> httpx.Response:
    redirect = await http.get(f"/reports/{report_id}/file", headers=headers)
    assert redirect.status_code == 303, redirect.text
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as anonymous:
        answer = await anonymous.get(redirect.headers["Location"])
    assert answer.status_code == 200, answer.text
    return answer


async def _database_rows(
    engine: AsyncEngine, user_id: str, start: date, end: date
) -> list[list[str]]:
    t = transactions.c
    lower, upper = datetime.combine(start, time.min), datetime.combine(end + timedelta(1), time.min)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(t.id, t.posted_at, t.amount_cents, t.currency, t.merchant, t.category)
            .where(t.user_id == user_id, t.posted_at >= lower, t.posted_at < upper)
            .order_by(t.posted_at, t.id)
        )
        return [
            [str(r.id), r.posted_at.isoformat(timespec="seconds"), str(r.amount_cents),
             r.currency, r.merchant, r.category]
            for r in rows
        ]  # fmt: skip


async def test_transactions_csv_matches_the_database_row_for_row_and_cent_for_cent(
    worker: None,
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    app_engine: AsyncEngine,
) -> None:
    start, end = last_90_days()
    rows = sample_transactions(start - timedelta(days=5), 100, rng_seed=5)  # some outside
    user = await make_user(rows)
    await create_user(app_engine, transactions=sample_transactions(start, 90, rng_seed=6))
    body = {"kind": "transactions-csv", "start": str(start), "end": str(end)}

    first = await http.post("/reports", json=body, headers=user.headers)
    assert first.status_code == 202, first.text
    report_id = first.json()["report_id"]
    assert re.fullmatch(rf"report-{user.id}-transactions-csv-[0-9a-f]{{12}}", report_id)
    again = await http.post("/reports", json=body, headers=user.headers)
    assert again.json()["report_id"] == report_id
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert done["status"] == "completed", done
    assert (done["kind"], done["format"]) == ("transactions-csv", "csv")
    assert done["params"] == {"start": str(start), "end": str(end)}
    assert (done["start"], done["end"]) == (str(start), str(end))
    assert done["result"]["content_type"] == "text/csv" and done["result"]["pdf_url"] is None

    answer = await _download(http, user.headers, report_id)
    assert answer.headers["content-type"].startswith("text/csv")
    assert done["result"]["bytes"] == len(answer.content)
    table = list(csv.reader(io.StringIO(answer.content.decode())))
    assert table[0] == CSV_COLUMNS
    expected = await _database_rows(app_engine, user.id, start, end)
    assert len(expected) > 100
    # The hostile name starts with no formula character, so every cell is the database's.
    assert table[1:] == expected
    assert sum(int(r[2]) for r in table[1:]) == sum(int(r[2]) for r in expected)

    message = await smtp.wait_for_message(user.email or "")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_payload(decode=True) == answer.content
    assert (await http.get(f"/reports/{report_id}/pdf", headers=user.headers)).status_code == 409


def _csv_row_by_row(rows: Sequence[Any]) -> bytes:
    """The CSV as the export wrote it before the database formatted its cells: one
    `writerow` a row, the timestamp and the formula guard in Python."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)

    def cell(value: str) -> str:
        return f"'{value}" if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value

    for r in rows:
        writer.writerow([r.id, r.posted_at.isoformat(timespec="seconds"), int(r.amount_cents),
                         r.currency, cell(r.merchant), cell(r.category)])  # fmt: skip
    return buffer.getvalue().encode()


async def test_transactions_csv_export_is_byte_for_byte_the_row_by_row_csv(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    start, end = last_90_days()
    hostile = ["=SUM(A1:A9)", "+1", "-2", "@cmd", "\tTab", "\rReturn", "a,b", 'say "hi"',
               "two\nlines", "", "ünïcødé €", "'quoted", " space", "x=1", "—dash"]  # fmt: skip
    # Seconds are truncated, never rounded; both ends of the range are in it.
    times = [time.min, time.max, time(0, 0, 59, 999_999), time(23, 59, 59, 500_000)]
    first, last = datetime.combine(start, time.min), datetime.combine(end, time.max)
    rows = [(datetime.combine(start + timedelta(i), times[i % 4]), (-1) ** i * (2**53 + i),
             name, hostile[-1 - i]) for i, name in enumerate(hostile)]  # fmt: skip
    rows += [(first, 1, "first", "edge"), (last, 2, "last", "edge")]
    outside = [first - timedelta(microseconds=1), last + timedelta(microseconds=1)]
    rows += [(moment, -1, "outside", "outside") for moment in outside]
    rows += sample_transactions(start, 30, rng_seed=8)
    user_id = await create_user(engine, transactions=rows)

    reporting = read_only_engine(database_url)
    params = DateRange(start=start, end=end)
    assert transactions_csv.export is not None
    try:
        async with query_context(reporting, user_id=user_id, report_id="t") as ctx:
            exported = b"".join([chunk async for chunk in transactions_csv.export(ctx, params)])
    finally:
        await reporting.dispose()
    async with engine.connect() as conn:
        stored = (await conn.execute(export_statement(user_id, params))).all()
    assert len(stored) == len(rows) - 2
    assert exported == _csv_row_by_row(stored)
    assert b"'=SUM(A1:A9)" in exported and b'"two\nlines"' in exported


async def test_an_export_stopped_after_its_first_chunk_leaves_the_next_one_whole(
    database_url: str, engine: AsyncEngine
) -> None:
    start, end = last_90_days()
    moments = [datetime.combine(start, time(12)) + timedelta(minutes=i) for i in range(4000)]
    user_id = await create_user(
        engine, transactions=[(m, -i, "M", "c") for i, m in enumerate(moments)]
    )
    reporting = read_only_engine(database_url)
    params = DateRange(start=start, end=end)
    assert transactions_csv.export is not None
    try:
        for _ in range(2):  # a COPY or a fetch cut short, on the connection the pool gives next
            async with query_context(reporting, user_id=user_id, report_id="t") as ctx:
                chunks = transactions_csv.export(ctx, params)
                assert isinstance(chunks, AsyncGenerator)
                assert len(await anext(chunks)) > 0
                await chunks.aclose()
        async with query_context(reporting, user_id=user_id, report_id="t") as ctx:
            whole = b"".join([chunk async for chunk in transactions_csv.export(ctx, params)])
    finally:
        await reporting.dispose()
    assert whole.count(b"\r\n") == 1 + len(moments)


def test_postgres_line_ends_become_csv_writers_wherever_a_chunk_ends() -> None:
    copied = b'1,a,"two\nlines"\n2,"say ""hi""\n",b\n3,"\r",c\n'
    whole = b'1,a,"two\nlines"\r\n2,"say ""hi""\n",b\r\n3,"\r",c\r\n'
    for cut in range(len(copied) + 1):
        first, quoted = crlf(copied[:cut], False)
        rest, quoted = crlf(copied[cut:], quoted)
        assert (first + rest, quoted) == (whole, False), cut


# --------------------------------------------------------------------------- a team's kinds


@dataclass
class KindsStack:
    http: httpx.AsyncClient
    url: str
    settings: Settings


@pytest.fixture(scope="module")
def example_on_path() -> Iterator[None]:
    """The example installed as a team would: its folder on the path, named in REPORT_KINDS."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLE))


@pytest.fixture(scope="module")
async def kinds_stack(
    example_on_path: None,
    tmp_path_factory: pytest.TempPathFactory,
    smtp: SmtpServer,
    temporal_client: Client,
    stack_database_url: str,
    app_engine: AsyncEngine,
) -> AsyncIterator[KindsStack]:
    settings = make_settings(
        tmp_path_factory.mktemp("kinds"),
        smtp.port,
        database_url=stack_database_url,
        report_kinds="merchant_count:merchant_count, tests.kinds.broken_kind:broken,"
        "tests.kinds.broken_kind:writer,tests.kinds.broken_kind:big",
        # The example's PDF (25-34 KB, by Chromium's version) is attached; two
        # years' worth of rows in one year's CSV (~74 KB) are linked.
        email_attach_max_bytes=50_000,
        rate_limit_per_minute=100,
    )
    async with serve_api(settings) as url:
        worker_settings = settings.model_copy(update={"public_url": url})
        async with (
            in_process_worker(worker_settings, temporal_client),
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield KindsStack(http, url, worker_settings)


async def test_the_example_kind_runs_through_the_api_the_worker_and_the_email(
    kinds_stack: KindsStack, make_user: MakeUser, smtp: SmtpServer, temporal_client: Client
) -> None:
    http = kinds_stack.http
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=8))
    kinds = {k["name"]: k for k in (await http.get("/kinds", headers=user.headers)).json()["kinds"]}
    assert kinds["merchant-count"]["params"]["properties"]["days"]["maximum"] == 366

    bad = await http.post(
        "/reports", json={"kind": "merchant-count", "days": 0}, headers=user.headers
    )
    assert bad.status_code == 422 and "days" in bad.json()["detail"]
    response = await http.post(
        "/reports", json={"kind": "merchant-count", "days": 30}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    report_id = response.json()["report_id"]
    assert report_id.startswith(f"report-{user.id}-merchant-count-")
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert done["status"] == "completed", done
    assert (done["title"], done["params"]) == ("Merchant count", {"days": 30})
    described = await temporal_client.get_workflow_handle(report_id).describe()
    summary = await described.static_summary()
    assert summary == f'Report for user {user.id}: Merchant count (merchant-count) {{"days":30}}'

    pdf = (await _download(http, user.headers, report_id)).content
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "Merchant count for Test User" in text and "last 30 days" in text
    assert 'Bob\'s <Bistro> & "Bar"' in text  # escaped, not markup
    message = await smtp.wait_for_message(user.email or "")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content() == pdf
    assert message["Subject"] == "Your report: Merchant count"


async def test_the_cli_requests_a_kind_with_params_and_saves_its_file(
    kinds_stack: KindsStack, make_user: MakeUser, tmp_path: Path
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=9))
    output = tmp_path / "merchants.pdf"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reportflow.cli", "request", "--url", kinds_stack.url,
        "--token", user.token, "--kind", "merchant-count", "--param", "days=7",
        "--output", str(output),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert output.read_bytes().startswith(b"%PDF")
    assert "last 7 days" in pdf_text(output.read_bytes())
    assert "merchant-count-" in out.decode()


async def test_a_kind_whose_query_raises_is_in_the_dead_letter_view_by_kind(
    kinds_stack: KindsStack, make_user: MakeUser, app_engine: AsyncEngine, temporal_client: Client
) -> None:
    http = kinds_stack.http
    user = await make_user()
    response = await http.post("/reports", json={"kind": "broken-view"}, headers=user.headers)
    report_id = response.json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert done["status"] == "failed"
    # The user reads a sentence; the team's detail is for the admin's dead-letter view.
    assert "merchant_stats" not in done["error"]["message"]

    admin = {"Authorization": f"Bearer {await create_token(app_engine, admin=True)}"}

    async def dead_letters(kind: str) -> list[dict[str, Any]]:
        answer = await http.get("/admin/reports", params={"kind": kind}, headers=admin)
        reports: list[dict[str, Any]] = answer.json()["reports"]
        return reports

    for _ in range(100):  # visibility is eventually consistent
        found = [r for r in await dead_letters("broken-view") if r["report_id"] == report_id]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found and found[0]["kind"] == "broken-view" and found[0]["stage"] == "querying"
    assert "merchant_stats does not exist" in found[0]["message"]
    assert not [r for r in await dead_letters("transactions") if r["report_id"] == report_id]

    address = temporal_client.service_client.config.target_host

    async def dlq(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "reportflow"), "dlq", *args,
            env=settings_env(kinds_stack.settings, address),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    listed = await dlq("list", "--kind", "broken-view")
    assert report_id in listed and "broken-view" in listed and "RuntimeError" in listed
    assert report_id not in await dlq("list", "--kind", "transactions")
    assert report_id in await dlq("redrive", "--kind", "broken-view")  # counts and lists only
    redriven = await http.post(f"/admin/reports/{report_id}/redrive", headers=admin)
    assert redriven.status_code in {200, 202}, redriven.text
    again = await wait_until(
        lambda: http.get(f"/reports/{report_id}", headers=user.headers),
        lambda r: r.json()["run_id"] != done["run_id"] and r.json()["status"] == "failed",
        timeout=120,
        what="the redriven run to fail again",
    )
    assert (again.json()["kind"], again.json()["params"]) == ("broken-view", {})


async def test_a_kinds_query_cannot_write(
    kinds_stack: KindsStack, make_user: MakeUser, app_engine: AsyncEngine
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 10, rng_seed=2))
    response = await kinds_stack.http.post(
        "/reports", json={"kind": "writer"}, headers=user.headers
    )
    done = await wait_status(
        kinds_stack.http, user, response.json()["report_id"], FINAL, timeout=120
    )
    assert done["status"] == "failed"
    admin = {"Authorization": f"Bearer {await create_token(app_engine, admin=True)}"}
    failed = await wait_until(
        lambda: kinds_stack.http.get("/admin/reports", params={"kind": "writer"}, headers=admin),
        lambda r: any(x["report_id"] == done["report_id"] for x in r.json()["reports"]),
        timeout=30,
        what="the writer's report in the dead-letter view",
    )
    [entry] = [x for x in failed.json()["reports"] if x["report_id"] == done["report_id"]]
    assert "readonly" in entry["message"].replace("-", "").replace(" ", "").lower()
    async with app_engine.connect() as conn:
        left = await conn.scalar(
            select(transactions.c.id).where(transactions.c.user_id == user.id).limit(1)
        )
    assert left is not None


async def test_a_large_file_is_linked_in_the_email_signed_and_expiring(
    kinds_stack: KindsStack, make_user: MakeUser, smtp: SmtpServer
) -> None:
    http = kinds_stack.http
    start = last_90_days()[1] - timedelta(days=365)
    rows = sample_transactions(start, 366, rng_seed=4) + sample_transactions(start, 366, rng_seed=5)
    user = await make_user(rows)
    response = await http.post(
        "/reports", json={"kind": "transactions-csv", "start": str(start)}, headers=user.headers
    )
    done = await wait_status(http, user, response.json()["report_id"], FINAL, timeout=120)
    assert done["status"] == "completed", done
    assert done["result"]["bytes"] > kinds_stack.settings.email_attach_max_bytes
    message = await smtp.wait_for_message(user.email or "")
    assert list(message.iter_attachments()) == []
    body = message.get_body(("plain",))
    assert body is not None
    [link] = re.findall(r"http://\S+", body.get_content())
    assert link.startswith(f"{kinds_stack.url}/reports/{done['report_id']}/file/download?")
    async with httpx.AsyncClient(timeout=30) as anonymous:
        fetched = await anonymous.get(link)
        tampered = await anonymous.get(link.replace("expires=", "expires=9"))
    assert fetched.status_code == 200
    assert fetched.content == (await _download(http, user.headers, done["report_id"])).content
    assert tampered.status_code == 403


async def test_the_python_client_requests_follows_and_downloads_any_kind(
    worker: None, api_url: str, make_user: MakeUser, tmp_path: Path
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 30, rng_seed=12))
    async with ReportflowClient(api_url, user.token) as reports:
        assert "transactions-csv" in {k["name"] for k in await reports.kinds()}
        with pytest.raises(ReportflowError) as refused:
            await reports.request("no-such-kind")
        assert refused.value.status_code == 422 and "no-such-kind" in refused.value.detail
        doc = await reports.request("transactions-csv", start=str(start))
        async with asyncio.timeout(120):
            done = await reports.follow(doc["report_id"])
        assert done["status"] == "completed", done
        size = await reports.download(doc["report_id"], tmp_path / "rows.csv")
    assert size == done["result"]["bytes"]
    assert (tmp_path / "rows.csv").read_text().startswith(",".join(CSV_COLUMNS))


async def test_render_writes_any_kind_here_without_temporal(
    settings: Settings, make_user: MakeUser, app_engine: AsyncEngine, tmp_path: Path
) -> None:
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 20, rng_seed=13))
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "REPORT_KINDS": "merchant_count:merchant_count",
           "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}  # fmt: skip

    async def render(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reportflow.cli", "render", "--user", user.id, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path, env=env,
        )  # fmt: skip
        async with asyncio.timeout(120):
            out, err = await process.communicate()
        return process.returncode or 0, (out + err).decode()

    code, said = await render("--kind", "transactions-csv", "--param", f"start={start}",
                              "--output", "rows.csv")  # fmt: skip
    assert code == 0, said
    table = list(csv.reader(io.StringIO((tmp_path / "rows.csv").read_text())))
    assert table[1:] == await _database_rows(app_engine, user.id, start, end)
    code, said = await render("--kind", "merchant-count", "--param", "days=5", "--html", "m.html")
    assert code == 0, said
    page = (tmp_path / "m.html").read_text()
    assert "last 5 days" in page and "Content-Security-Policy" in page
    code, said = await render("--kind", "merchant-count", "--param", "days=0", "--html", "m.html")
    assert code == 2 and "days" in said


async def test_a_schedule_of_a_kind_sends_that_kind_of_the_previous_period(
    worker: None,
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    temporal_client: Client,
) -> None:
    user = await make_user()
    refused = await http.post(
        "/schedules",
        json={"every": "week", "day": "monday", "kind": "transactions-csv", "params": {"x": 1}},
        headers=user.headers,
    )
    assert refused.status_code == 422 and "params.x" in refused.json()["detail"]
    unknown = await http.post(
        "/schedules", json={"every": "week", "day": "monday", "kind": "nope"}, headers=user.headers
    )
    assert unknown.status_code == 422 and "unknown report kind 'nope'" in unknown.json()["detail"]
    created = await http.post(
        "/schedules",
        json={"every": "week", "day": "monday", "kind": "transactions-csv"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "transactions-csv"
    schedule = temporal_client.get_schedule_handle(created.json()["id"])
    await schedule.trigger()
    start, end = previous_period("week", datetime.now(UTC).date())
    # The schedule's run starts the report a manual request of that period names.
    expected = KindRequest.of(
        transactions_csv, transactions_csv.parse({"start": start, "end": end})
    )
    described = await wait_until(
        schedule.describe, lambda d: bool(d.info.recent_actions), what="the triggered run"
    )
    action = described.info.recent_actions[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    started = await temporal_client.get_workflow_handle(action.workflow_id).result()
    report_id = started["report_id"]
    assert report_id == expected.report_id(user.id)
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert (done["kind"], done["start"], done["end"]) == ("transactions-csv", str(start), str(end))
    assert done["status"] == "completed", done
    message = await smtp.wait_for_message(user.email or "")
    assert [a.get_content_type() for a in message.iter_attachments()] == ["text/csv"]
    assert len(smtp.messages_to(user.email or "")) == 1
    await schedule.delete()


async def test_a_query_result_too_big_for_history_goes_by_the_report_store(
    kinds_stack: KindsStack, make_user: MakeUser, temporal_client: Client
) -> None:
    user = await make_user()
    http = kinds_stack.http
    response = await http.post("/reports", json={"kind": "big-result"}, headers=user.headers)
    report_id = response.json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL, timeout=120)
    assert done["status"] == "completed", done
    answer = await _download(http, user.headers, report_id)
    assert answer.content == b"300 rows, last 000299"
    assert answer.headers["content-type"].startswith("text/plain")
    # Only the claim check travelled: no payload in the run's history is near the data's size.
    largest = 0
    async for event in temporal_client.get_workflow_handle(report_id).fetch_history_events():
        largest = max(largest, event.ByteSize())
    assert largest < 64 * 1024


@pytest.mark.parametrize("command", ["api", "worker"])
async def test_a_wrong_kind_stops_the_api_and_the_worker_at_start_with_a_sentence(
    settings: Settings, temporal_client: Client, command: str
) -> None:
    env = settings_env(settings, temporal_client.service_client.config.target_host)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "reportflow"), command,
        env={**env, "REPORT_KINDS": "merchant_count:missing", "PYTHONPATH": str(EXAMPLE)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().strip() == (
        f"reportflow {command}: REPORT_KINDS entry 'merchant_count:missing': "
        "module 'merchant_count' has no attribute 'missing'"
    )
