"""`reportflow bench` runs on a fresh machine and prints its figures (never asserted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys


async def bench(*args: str) -> str:
    """`reportflow bench ARGS`; its output. Past the timeout it is interrupted as by
    Ctrl-C, so it stops the servers it started (a killed bench would leave them)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        "bench",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(360):  # a busy 2-core machine: the ratios took 170 s
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def test_bench_prints_a_table_of_figures() -> None:
    out = await bench("--quick", "--capacity", "10000", "1000000")
    table, capacity = out.split("\ncapacity model from this run: ")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["measure", "n", "p50", "p95"]
    measures = "\n".join(lines[1:])
    for name in (
        "query:",
        "render:",
        "chromium launch",
        "POST /reports",
        "end to end",
        "temporal per report",
        "dev server ceiling",
    ):
        assert name in measures
    # The estimate, one row per volume asked for, from this run's figures.
    assert "reports/min per worker core" in capacity
    table_lines = capacity.split("reports/day", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = [line.split() for line in table_lines]
    assert [row[0] for row in rows] == ["10,000", "1,000,000"]
    assert all(int(row[2]) >= 1 and int(row[3]) >= 2 for row in rows)


async def test_bench_ratios_come_as_json() -> None:
    out = await bench("--ratios", "--quick", "--json")
    report = json.loads(out)
    assert report["machine"]["cores"] >= 1
    figures = {f["key"] for f in report["ratios"]}
    assert figures == {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"}
    for figure in report["ratios"]:
        assert figure["value"] and figure["baseline"]
    polled = next(f for f in report["ratios"] if f["what"].startswith("GET /reports"))
    assert polled["detail"]["requests"] > 0
    # P2 against the same work in a plain loop (no Temporal): in each layout, the
    # plain loop's own batches done and measured beside reportflow's burst.
    plain = [f for f in report["ratios"] if "plain loop" in f["what"]]
    assert [f["key"] for f in plain] == ["P2"] * (2 if report["machine"]["cores"] >= 2 else 1)
    for figure in plain:
        assert figure["ratio"] > 0
        assert figure["detail"]["plain_before"] > 0 and figure["detail"]["plain_after"] > 0
        assert figure["detail"]["plain_cpu_s_per_report"] > 0
