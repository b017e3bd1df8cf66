"""`reportflow render`: one report rendered locally from the database, no Temporal."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from pypdf import PdfReader

from reportflow.core.db import create_engine, create_schema
from tests.utils.data import Txn, create_user, sample_transactions
from tests.utils.reportflow_http import last_90_days


async def reportflow(*args: str, database_url: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        # Nothing listens here: a render that needed Temporal would fail.
        "TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_render_writes_the_html_and_pdf_of_a_users_range(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'local.db'}"
    engine = create_engine(database_url)
    await create_schema(engine)
    start, end = last_90_days()
    posted = datetime.combine(start + timedelta(days=3), time(12), tzinfo=UTC)
    marker: Txn = (posted, -9_999_999, "Bakery Zebulon", "groceries")  # the top merchant
    user_id = await create_user(
        engine, transactions=[*sample_transactions(start, 60, rng_seed=3), marker]
    )
    await engine.dispose()
    html, pdf = tmp_path / "report.html", tmp_path / "report.pdf"

    code, out, err = await reportflow(
        "render", "--user", user_id, "--html", str(html), "--pdf", str(pdf),
        database_url=database_url,
    )  # fmt: skip

    assert code == 0, err
    assert f"report-{user_id}-{start}-{end}" in out
    assert "Bakery Zebulon" in html.read_text()
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 1
    assert f"({len(reader.pages)} pages" in out


async def test_render_of_a_range_or_user_that_cannot_be_says_why(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'local.db'}"
    engine = create_engine(database_url)
    await create_schema(engine)
    await engine.dispose()
    html = str(tmp_path / "r.html")

    code, _, err = await reportflow("render", "--user", "nobody", "--html", html,
                                    database_url=database_url)  # fmt: skip
    assert code == 1 and "nobody" in err, err

    code, _, err = await reportflow(
        "render", "--user", "nobody", "--start", "2026-01-10", "--end", "2026-01-01",
        "--html", html, database_url=database_url,
    )  # fmt: skip
    assert code == 2 and "after end" in err, err

    code, _, err = await reportflow("render", "--user", "nobody", database_url=database_url)
    assert code == 2 and "--html" in err, err
    assert not Path(html).exists()
