"""`reportflow bench` runs on a fresh machine and prints its figures (never asserted)."""

from __future__ import annotations

import asyncio
import sys


async def test_bench_prints_a_table_of_figures() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        "bench",
        "--quick",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(240):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    table = out.decode().splitlines()
    assert table[0].split()[:4] == ["measure", "n", "p50", "p95"]
    measures = "\n".join(table[1:])
    for name in ("query:", "render:", "chromium launch", "POST /reports", "end to end"):
        assert name in measures
