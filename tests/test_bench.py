"""`reportflow bench` runs on a fresh machine and prints its figures (never asserted)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import selectors
import signal
import sys
from pathlib import Path

import pytest

from reportflow_dev.bench_cost import OTHER_PYTHON, ROWS, classify, sampled_threads, split_samples
from reportflow_dev.bench_figures import COST_KEY, Figure, print_ratios


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
    # The cost table: every part, in CPU-ms per report, summing to the total.
    cost = report["cost"]
    parts = {p["part"]: p for p in cost["parts"]}
    assert list(parts) == list(ROWS)
    for name in (
        "Chromium printing",
        "PDF post-processing",
        "template rendering",
        "SQL",
        "SMTP",
        "payload encoding",
        "SDK: workflow activations, sandbox",
        "SDK: other Python",
        "Temporal server",
        "API",
        "bench (clients, SMTP)",
    ):
        assert parts[name]["cpu_ms_per_report"] >= 0
    assert parts["Chromium printing"]["cpu_ms_per_report"] > 0
    total = cost["total_cpu_ms_per_report"]
    assert sum(p["cpu_ms_per_report"] for p in parts.values()) == pytest.approx(total, abs=0.1)
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0, abs=0.001)
    assert cost["detail"]["samples"] > 0, cost["note"]  # py-spy attached and sampled
    assert COST_KEY not in figures


def test_cost_sample_goes_to_its_innermost_known_part() -> None:
    site = "/venv/lib/python3.11/site-packages"
    stdlib = "/usr/lib/python3.11"
    loop = f"_run_once ({stdlib}/asyncio/base_events.py:1922)"
    convert = f"encode ({site}/temporalio/converter.py:600)"
    dumps = f"dumps ({stdlib}/json/__init__.py:238)"
    activity = f"_run_activity ({site}/temporalio/worker/_activity.py:500)"
    mine = "query (/repo/reportflow/activities/report.py:90)"
    execute = f"execute ({site}/sqlalchemy/engine/base.py:1400)"
    lines = Path(selectors.__file__).read_text().splitlines()
    poll = next(n for n, text in enumerate(lines, 1) if "self._selector.poll(" in text)
    epoll = f"select ({selectors.__file__}:{poll})"
    raw = "\n".join(
        [
            f"{loop};{activity};{convert};{dumps} 3",  # json under the converter
            f"{loop};{activity};{mine};{execute};{dumps} 2",  # json under SQL
            f"thread (12): MainThread;{loop};{activity} 1",
            f"{loop};{mine} 4",  # reportflow's own glue
            f"{loop} 5",
            f"thread (13): MainThread;{loop};{epoll} 7",  # the loop woken, queued for a CPU
            "thread (14) 8",  # a native thread, no Python frame
            f"thread (14);call_soon_threadsafe ({stdlib}/asyncio/base_events.py:812) 1",
        ]
    )
    assert split_samples(raw) == {
        "payload encoding": 3,
        "SQL": 2,
        "SDK: other Python": 1,
        OTHER_PYTHON: 10,
        None: 15,  # left out
    }
    assert sampled_threads(raw) == {12, 13}
    sandbox = f"{site}/temporalio/worker/workflow_sandbox/_importer.py"
    assert classify([activity, f"_import ({sandbox}:400)", dumps]) == (
        "SDK: workflow activations, sandbox"
    )


def test_cost_table_prints_after_the_ratios() -> None:
    figures = [
        Figure("P2", "reports/s end to end", "2.00/s", "3.00 PDFs/s", 0.67, "", None),
        Figure(COST_KEY, "Chromium printing", "300.0", "/proc", 0.75, "", None),
        Figure(COST_KEY, "SQL", "100.0", "sampled", 0.25, "", None),
        Figure(COST_KEY, "total", "400.0", "P2's burst: 24 reports", 1.0, "", None),
    ]
    out = io.StringIO()
    print_ratios(figures, out)
    ratios, cost = out.getvalue().split("\n\n")
    assert "Chromium printing" not in ratios and "reports/s end to end" in ratios
    lines = cost.splitlines()
    assert lines[0].split()[:5] == ["CPU", "per", "report,", "by", "part"]
    assert lines[1].split()[:4] == ["Chromium", "printing", "300.0", "75.0%"]
    assert lines[3].split()[:3] == ["total", "400.0", "100.0%"]
    assert lines[4] == "note: P2's burst: 24 reports"
