"""`reportflow bench` ratios: what orchestration costs next to the work it orchestrates.

One process tree on this machine: the Temporal dev server (its own metrics
endpoint counts the calls it serves), the API (`reportflow api`) and one worker
(`reportflow worker`) as separate processes, a recording SMTP server and SQLite
seeded with 90 days per user. Then, side by side:

- P1: `POST /reports` against a raw `start_workflow` of the same workflow on
  the same server, one at a time and 50 at once (p50/p99, ratio of p99s);
- P2: reports end to end (POST to the SMTP server's 250) per second against raw
  Chromium PDFs per second of the very HTML the render step produces, at the
  worker's render concurrency on the same cores: first with everything sharing
  every core, then as on separate hosts (load.py's CoreSplit: the worker and
  its Chromium on half the cores, the rest on the other half), the layout P4
  and P6 then keep; in each layout also against the same work in a plain
  asyncio loop with no Temporal (plain_loop.py), bracketed as the raw figure is;
- P3: one report, click to the SMTP server's 250, against its raw render;
- P4: status reads (`GET /reports/{id}`) by 100 pollers at one a second each
  while reports run, first on the shared box with nothing but reportflow's own
  defaults (no CPU weights: Chromium runs under SCHED_BATCH), then by 100 and 500
  in the production shape below: p50/p99, share of requests served, Temporal
  calls a second, API CPU, and the report throughput against P2's; then 1,000
  SSE streams open on a burst: Temporal calls a second and API CPU. The pollers
  are a lean client, and the worker runs at a lower CPU weight (load.py says
  why);
- P5 and P7 (reportflow/bench_limits.py): the aggregate as the table grows, and
  the dev server's start knee;
- P6: the worker's resident memory (with its Chromium) as reports are done;
- P8 (reportflow_dev/bench_export.py): the transactions-csv export's rows/s
  against the database's own CSV dump of the same rows, and its RSS growth.

Figures are printed (a table, or JSON), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

from reportflow.core.browser import Browser, find_chromium
from reportflow.core.config import Settings
from reportflow.core.db import create_engine
from reportflow.core.temporal import with_codec
from reportflow.report import render_html
from reportflow.report.query import aggregate
from reportflow.seed import user_id_for
from reportflow.service.reports import report_id_for, start_report
from reportflow_dev.bench import bench_stack
from reportflow_dev.bench_export import export_speeds
from reportflow_dev.bench_figures import Figure, ms, pct
from reportflow_dev.bench_limits import aggregate_scaling, start_knee
from reportflow_dev.load import CoreSplit, CpuGroup, RawHttp, sse_events
from reportflow_dev.plain_loop import PlainRun, p2_against_plain_loop, plain_loop_rate
from reportflow_dev.testing import (
    RecordingSmtpServer,
    WorkerProcess,
    _descendants,
    _parents,
    free_port,
    settings_env,
)

# The worker's CPU weight next to the API's and Temporal's (see CpuGroup).
WORKER_CPU_SHARE = 0.25

# Frontend operations a worker makes (polls, completions, heartbeats): not the API's.
_WORKER_OPERATIONS = ("Poll", "Respond", "RecordActivityTaskHeartbeat", "ShutdownWorker")


@dataclass
class RatioOptions:
    users: int = 24
    reports: int = 24  # per end-to-end run
    # P1 samples of each kind, one at a time and 50 at once: the p99 is the 30th and
    # the 10th slowest. One at a time, a tenth of the dev server's starts take four
    # times its median; with 1,000 samples where those fell moved the ratio by
    # +-0.07 from run to run on one machine (of 200, one stall moved it by 0.2).
    starts: tuple[int, int] = (3_000, 1_000)
    pollers: int = 100
    many_pollers: int = 500  # P4 again, latency and cost only
    streams: int = 1_000  # P4: open SSE streams during a burst
    poll_seconds: float = 1.0
    table_rows: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # P5
    postgres_url: str | None = None  # P5 and P8 on PostgreSQL too (a scratch database)
    export_rows: int = 1_000_000  # P8
    start_rates: tuple[float, ...] = (5, 10, 20, 40, 80, 160)  # P7, each for 5 s


# ----------------------------------------------------------------- processes


class TemporalCalls:
    """The dev server's own count of the calls it served, by operation."""

    def __init__(self, metrics_port: int) -> None:
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"

    async def snapshot(self) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(self.url)).text
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("service_requests{"):
                continue
            labels, _, value = line.rpartition(" ")
            operation = labels.split('operation="', 1)[-1].split('"', 1)[0]
            counts[operation] = counts.get(operation, 0.0) + float(value)
        return counts

    @staticmethod
    def api_calls(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Calls made between two snapshots, worker operations left out."""
        return {
            op: after[op] - before.get(op, 0.0)
            for op in after
            if not op.startswith(_WORKER_OPERATIONS) and after[op] > before.get(op, 0.0)
        }


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(pid: int) -> float:
    """CPU time of a process tree (a worker and its Chromium)."""
    return sum(_cpu_seconds(p) for p in {pid, *_descendants(pid, _parents())})


@dataclass
class CpuMeter:
    """CPU seconds each part of the stack used between `start` and `read`."""

    pids: dict[str, int]
    began: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        now = {name: _tree_cpu(pid) for name, pid in self.pids.items()}
        now["bench (clients, SMTP)"] = time.process_time()
        return now

    def start(self) -> None:
        self.began = self._now()

    def read(self, wall: float) -> dict[str, float]:
        """Share of one core each part used."""
        return {name: (v - self.began[name]) / wall for name, v in self._now().items()}


def _tree_rss(pid: int) -> float:
    """Resident memory (bytes) of a process tree: a worker and its Chromium."""
    total = 0
    for p in {pid, *_descendants(pid, _parents())}:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return float(total)


def _p6(rss: dict[int, float]) -> Figure:
    (first, before), (_, after) = min(rss.items()), max(rss.items())
    return Figure(
        "P6",
        "worker + Chromium resident memory by reports done",
        ", ".join(f"{mb:.0f} MB after {n}" for n, mb in ((n, b / 1e6) for n, b in rss.items())),
        f"{before / 1e6:.0f} MB after {first}",
        after / before,
        "no growth per report",
        None,
        {f"rss_bytes_after_{n}": b for n, b in rss.items()},
    )


def _cpu_note(shares: dict[str, float]) -> str:
    return ", ".join(f"{name} {share * 100:.0f}%" for name, share in shares.items())


def _spawn_api(
    settings: Settings, temporal_address: str, log: Path, port: int
) -> subprocess.Popen[bytes]:
    env = settings_env(settings, temporal_address)
    env.update(
        RATE_LIMIT_PER_MINUTE=str(settings.rate_limit_per_minute),
        EVENTS_MAX_STREAMS_PER_TOKEN=str(settings.events_max_streams_per_token),
        LOG_LEVEL="WARNING",
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reportflow.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.asynccontextmanager
async def _api_process(
    settings: Settings, temporal_address: str, log: Path
) -> AsyncIterator[tuple[str, int]]:
    """`reportflow api` on a free port; yields its URL and PID."""
    port = free_port()
    process = _spawn_api(settings, temporal_address, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(60), httpx.AsyncClient() as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the API exited; see {log}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ----------------------------------------------------------------- measures


async def _terminate(client: Client, report_ids: list[str], reason: str) -> None:
    gate = asyncio.Semaphore(20)

    async def one(report_id: str) -> None:
        async with gate:
            await client.get_workflow_handle(report_id).terminate(reason)

    await asyncio.gather(*(one(report_id) for report_id in report_ids))


def _range(offset_days: int) -> tuple[date, date]:
    end = datetime.now(UTC).date() - timedelta(days=offset_days)
    return end - timedelta(days=89), end


async def _p1_at(
    concurrency: int,
    base_url: str,
    client: Client,
    settings: Settings,
    tokens: list[str],
    days: range,
    started: list[str],
) -> tuple[list[float], list[float]]:
    """Seconds taken by POSTs and by raw starts, alternating (one POST, then one raw
    start), so both meet the same server state, and at 50 at once the same load."""
    idle: asyncio.Queue[RawHttp] = asyncio.Queue()  # kept-alive, one per request in flight
    for _ in range(concurrency):
        idle.put_nowait(RawHttp(base_url))
    posts: list[float] = []
    raws: list[float] = []

    async def post(i: int) -> None:
        start, end = _range(i)
        conn = await idle.get()
        try:
            began = time.perf_counter()
            reply = await conn.request(
                "POST",
                "/reports",
                {
                    "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                    "Content-Type": "application/json",
                },
                json.dumps({"start": str(start), "end": str(end)}).encode(),
            )
            posts.append(time.perf_counter() - began)
        finally:
            idle.put_nowait(conn)
        if reply.status != 202:
            raise RuntimeError(f"POST /reports answered {reply.status}: {reply.body!r}")
        started.append(json.loads(reply.body)["report_id"])

    async def raw(i: int) -> None:
        start, end = _range(i)
        began = time.perf_counter()
        begun = await start_report(
            client, settings, user_id=user_id_for(i % len(tokens) + 1), start=start, end=end
        )
        raws.append(time.perf_counter() - began)
        started.append(begun.report_id)

    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await (post if i % 2 == 0 else raw)(i)

    try:
        await asyncio.gather(*(one(i) for i in days))
    finally:
        while not idle.empty():
            await idle.get_nowait().close()
    return posts, raws


async def _p1(
    base_url: str,
    client: Client,
    settings: Settings,
    tokens: list[str],
    options: RatioOptions,
    started: list[str],
) -> list[Figure]:
    """POST /reports vs raw start_workflow, fresh report IDs each (no worker runs);
    the IDs started go to `started`."""
    figures = []
    first_day = 1000
    for concurrency, samples in zip((1, 50), options.starts, strict=True):
        days = range(first_day, first_day + 2 * samples)
        first_day = days.stop
        posts, raws = await _p1_at(concurrency, base_url, client, settings, tokens, days, started)
        ratio = pct(posts, 0.99) / pct(raws, 0.99)
        figures.append(
            Figure(
                "P1",
                f"POST /reports vs start_workflow, {concurrency} at once",
                f"p50 {ms(pct(posts, 0.5))}, p99 {ms(pct(posts, 0.99))}",
                f"p50 {ms(pct(raws, 0.5))}, p99 {ms(pct(raws, 0.99))}",
                ratio,
                "p99 ratio <= 1.1",
                ratio <= 1.1,
                {
                    "post_p50_s": pct(posts, 0.5),
                    "post_p99_s": pct(posts, 0.99),
                    "start_p50_s": pct(raws, 0.5),
                    "start_p99_s": pct(raws, 0.99),
                },
            )
        )
    return figures


async def _raw_renders(
    settings: Settings, options: RatioOptions, offset: int
) -> tuple[float, float]:
    """Chromium alone: the HTML of the reports P2 renders, printed at the worker's
    render concurrency (one Browser, as in a worker); (PDFs per second, seconds
    for one PDF printed on its own)."""
    engine = create_engine(settings.database_url)
    pages = []
    for i in range(options.reports):
        start, end = _range(offset)
        user = user_id_for(i % options.users + 1)
        data = await aggregate(
            engine, report_id=report_id_for(user, start, end), user_id=user, start=start, end=end
        )
        pages.append(render_html(data))
    await engine.dispose()
    browser = Browser(
        find_chromium(settings.chromium_executable), max_concurrent=settings.render_concurrency
    )
    await browser.start()
    try:
        await browser.pdf(pages[0])  # warm, as a worker is
        began = time.perf_counter()
        await browser.pdf(pages[0])
        alone = time.perf_counter() - began
        began = time.perf_counter()
        await asyncio.gather(*(browser.pdf(html) for html in pages))
        return len(pages) / (time.perf_counter() - began), alone
    finally:
        await browser.close()


async def _end_to_end(
    http: httpx.AsyncClient,
    smtp: RecordingSmtpServer,
    tokens: list[str],
    options: RatioOptions,
    offset: int,
    created: Callable[[str], None] = lambda report_id: None,
) -> tuple[float, list[str]]:
    """`reports` new reports at once; reports per second from the first POST to the
    SMTP server's last 250."""
    delivered = len(smtp.deliveries)
    began = time.perf_counter()
    ids = []
    for i in range(options.reports):
        start, end = _range(offset)
        response = await http.post(
            "/reports",
            json={"start": str(start), "end": str(end)},
            headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
        )
        response.raise_for_status()
        ids.append(response.json()["report_id"])
        created(ids[-1])
    async with asyncio.timeout(600):
        while True:
            if len(smtp.deliveries) >= delivered + options.reports:
                break
            await asyncio.sleep(0.02)
    return options.reports / (time.perf_counter() - began), ids


async def _plain_loop(
    settings: Settings,
    smtp: RecordingSmtpServer,
    options: RatioOptions,
    tmp: Path,
    offset: int,
    split: CoreSplit | None = None,
    group: CpuGroup | None = None,
) -> PlainRun:
    """The burst's reports at `offset` done by the plain loop (plain_loop.py), on the
    worker's cores and CPU weight when `split` and `group` are given."""
    start, end = _range(offset)
    return await plain_loop_rate(
        settings, smtp, reports=options.reports, users=options.users, start=start, end=end,
        logs=tmp, tree_cpu=_tree_cpu,
        pin=split.on_worker_cores() if split else None, group=group,
    )  # fmt: skip


async def run_ratios(options: RatioOptions) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="reportflow-ratios-") as tmp_dir:
        tmp = Path(tmp_dir)
        stack = await bench_stack(tmp, options.users)
        smtp, temporal, settings = stack.smtp, stack.temporal, stack.settings
        metrics_port, token_list = stack.metrics_port, stack.tokens

        await smtp.start()
        await temporal.start()
        calls = TemporalCalls(metrics_port)
        # Encrypted like the API's, so the raw starts cost what a real start costs.
        client = with_codec(await Client.connect(temporal.address), settings)
        figures: list[Figure] = []
        try:
            # P1 with no worker: starts only, then those runs are ended. Their first
            # workflow tasks stay queued after that, each to be found stale when a
            # worker polls: on the reports' own task queue 8,000 of them held the
            # first report that followed for seconds. So P1 has a queue of its own.
            p1_settings = settings.model_copy(update={"task_queue": "bench-p1-no-worker"})
            p1_runs: list[str] = []
            async with _api_process(p1_settings, temporal.address, tmp / "api-p1.log") as (p1, _):
                figures += await _p1(p1, client, p1_settings, token_list, options, p1_runs)
            await _terminate(client, p1_runs, "bench: P1 only")
            async with (
                _api_process(settings, temporal.address, tmp / "api.log") as (url, api_pid),
                httpx.AsyncClient(
                    base_url=url,
                    timeout=60,
                    limits=httpx.Limits(max_connections=60),
                ) as http,
            ):
                raw, raw_one = await _raw_renders(settings, options, offset=1)
                split = CoreSplit()
                if split.possible:  # raw Chromium on the cores the worker will have
                    with split.on_worker_cores():
                        raw_split, _ = await _raw_renders(settings, options, offset=5)
                worker = WorkerProcess.start(settings, temporal.address, tmp / "worker.log")
                group = CpuGroup(f"reportflow-bench-{os.getpid()}", WORKER_CPU_SHARE)
                assert temporal.process is not None
                others = [temporal.process.pid, api_pid, os.getpid()]
                try:
                    await worker.wait_ready()
                    meter = CpuMeter(
                        {
                            "API": api_pid,
                            "worker + Chromium": worker.pid,
                            "Temporal": temporal.process.pid,
                        }
                    )
                    one = replace(options, reports=1)
                    clicked = 1 / (await _end_to_end(http, smtp, token_list, one, offset=0))[0]
                    figures.append(
                        Figure(
                            "P3",
                            "one report, click to SMTP 250, nothing else running",
                            ms(clicked),
                            f"{ms(raw_one)} raw render of it",
                            clicked / raw_one,
                            "orchestration next to rendering",
                            None,
                            {"click_to_250_s": clicked, "raw_render_s": raw_one},
                        )
                    )
                    plain = await _plain_loop(settings, smtp, options, tmp, 1)
                    meter.start()
                    alone, _ = await _end_to_end(http, smtp, token_list, options, offset=1)
                    cpu = meter.read(options.reports / alone)
                    # Raw again just after (the worker idle): bracketed, as P4's rate is.
                    raws = (raw, (await _raw_renders(settings, options, offset=1))[0])
                    after = await _plain_loop(settings, smtp, options, tmp, 1)
                    shared = f"all on {len(split.all)} cores, reportflow's own defaults"
                    figures += _p2(options, alone, raws, cpu, shared)
                    worker_cpu = cpu["worker + Chromium"]
                    figures.append(p2_against_plain_loop(alone, worker_cpu, (plain, after), shared))
                    # The cost table: that burst again, profiled (py-spy's CPU kept out of P2).
                    from reportflow_dev.bench_cost import ReportCost  # here: it imports this module

                    cost = ReportCost(
                        worker.pid, {"Temporal server": temporal.process.pid, "API": api_pid}, tmp
                    )
                    async with cost.measuring():
                        await _end_to_end(http, smtp, token_list, options, offset=7)
                    figures += cost.figures(options.reports, "P2's all-shared burst again")
                    p4 = (http, smtp, calls, meter, token_list)
                    # A single box with nothing but reportflow's defaults (Chromium at
                    # SCHED_BATCH beside the API; no CPU weights): a small deployment.
                    figures += await _p4(*p4, options, alone, shared, offset=6)
                    done = 1 + 4 * options.reports
                    # From here on, the production shape: the worker at a lower CPU weight.
                    group.add({worker.pid, *_descendants(worker.pid, _parents())})
                    layout = f"all on {len(split.all)} cores, {group.description}"
                    if split.possible:  # as on separate hosts, from here to P6
                        split.apply({worker.pid, *_descendants(worker.pid, _parents())}, others)
                        plain = await _plain_loop(settings, smtp, options, tmp, 5, split, group)
                        meter.start()
                        alone, _ = await _end_to_end(http, smtp, token_list, options, offset=5)
                        cpu = meter.read(options.reports / alone)
                        with split.on_worker_cores():
                            raws = (raw_split, (await _raw_renders(settings, options, offset=5))[0])
                        after = await _plain_loop(settings, smtp, options, tmp, 5, split, group)
                        layout = split.description
                        figures += _p2(options, alone, raws, cpu, layout)
                        worker_cpu = cpu["worker + Chromium"]
                        figures.append(
                            p2_against_plain_loop(alone, worker_cpu, (plain, after), layout)
                        )
                        done += options.reports
                    rss = {done: _tree_rss(worker.pid)}
                    figures += await _p4(*p4, options, alone, layout, offset=2)
                    done += 2 * options.reports
                    rss[done] = _tree_rss(worker.pid)
                    many = replace(options, pollers=options.many_pollers)
                    figures += await _p4(*p4, many, alone, layout, offset=3)
                    figures += await _p4_streams(*p4, options, offset=4)
                    rss[done + 3 * options.reports] = _tree_rss(worker.pid)
                    figures.append(_p6(rss))
                finally:
                    worker.stop()
                    group.remove()
                    split.undo(others)
                figures.append(await start_knee(client, options.start_rates))
        finally:
            await temporal.stop()
            await smtp.stop()
    figures.append(await aggregate_scaling(options.table_rows))
    if options.postgres_url:
        figures.append(await aggregate_scaling(options.table_rows, options.postgres_url))
    figures += await export_speeds(options.export_rows, options.postgres_url)
    return figures


def _p2(
    options: RatioOptions,
    rate: float,
    raws: tuple[float, float],
    cpu: dict[str, float],
    layout: str,
) -> list[Figure]:
    """Reports per second end to end against raw Chromium on the same cores (the
    mean of just before and just after), and where the CPU went meanwhile. Each
    layout is judged: all on the same cores is issue 25's P2, a single box with
    nothing but reportflow's defaults; apart is as on separate hosts."""
    raw = sum(raws) / 2
    return [
        Figure(
            "P2",
            f"reports/s end to end, {options.reports} at once, one worker",
            f"{rate:.2f}/s",
            f"{raw:.2f} PDFs/s raw Chromium on the same cores ({raws[0]:.2f} before, "
            f"{raws[1]:.2f} after); {layout}",
            rate / raw,
            ">= 0.85",
            rate / raw >= 0.85,
            {
                "reports_per_s": rate,
                "raw_pdfs_per_s": raw,
                "raw_before": raws[0],
                "raw_after": raws[1],
            },
        ),
        Figure(
            "P2",
            "CPU during that burst (share of one core)",
            _cpu_note(cpu),
            f"{os.cpu_count()} cores",
            None,
            "",
            None,
            {f"cpu_{k}": v for k, v in cpu.items()},
        ),
    ]


def _burst(
    options: RatioOptions, token_list: list[str], offset: int
) -> tuple[list[str], dict[str, str]]:
    """The report IDs `_end_to_end` will start at this offset, and each one's token."""
    ids = [
        report_id_for(user_id_for(i % options.users + 1), *_range(offset))
        for i in range(options.reports)
    ]
    return ids, {rid: token_list[i % len(token_list)] for i, rid in enumerate(ids)}


async def _p4(
    http: httpx.AsyncClient,
    smtp: RecordingSmtpServer,
    calls: TemporalCalls,
    meter: CpuMeter,
    token_list: list[str],
    options: RatioOptions,
    alone: float,
    layout: str,
    offset: int,
) -> list[Figure]:
    """The same burst of reports as P2, with `pollers` clients reading their status."""
    ids, owners = _burst(options, token_list, offset)
    before_calls = await calls.snapshot()
    meter.start()
    began = time.perf_counter()
    stats = _PollStats()
    pollers: list[asyncio.Task[None]] = []

    def start_polling(report_id: str) -> None:
        """Fire, acknowledge, poll: this report's share of the pollers starts now."""
        index = ids.index(report_id)
        pollers.extend(
            asyncio.create_task(_poll(str(http.base_url), owners, ids, n, options, stats))
            for n in range(index, options.pollers, len(ids))
        )

    try:
        loaded, _ = await _end_to_end(
            http, smtp, token_list, options, offset=offset, created=start_polling
        )
    finally:
        stats.stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
    wall = time.perf_counter() - began
    cpu = meter.read(wall)
    api_cpu = cpu["API"] * wall
    made = TemporalCalls.api_calls(before_calls, await calls.snapshot())
    total_calls = sum(made.values())
    describes = made.get("DescribeWorkflowExecution", 0.0)
    # The rate without pollers again, just after: on a machine this small a burst's
    # rate drifts by more than the 5% judged, so the loaded burst is bracketed.
    after, _ = await _end_to_end(http, smtp, token_list, options, offset=offset + 10)
    unloaded = (alone + after) / 2
    served = 1 - stats.failed / max(stats.sent, 1)
    expected = stats.due_seconds / options.poll_seconds
    p99 = pct(stats.times, 0.99)
    judged = options.pollers == RatioOptions.pollers  # issue 10's goals are set at 100
    return [
        Figure(
            "P4",
            f"GET /reports/{{id}}, {options.pollers} pollers at 1/s during P2's burst",
            f"p50 {ms(pct(stats.times, 0.5))}, p99 {ms(p99)}",
            f"{stats.sent - stats.failed} of {stats.sent} served ({expected:.0f} due); {layout}",
            served,
            "p99 <= 50 ms, all served" if judged else "",
            p99 <= 0.05 and stats.failed == 0 and stats.sent >= 0.95 * expected if judged else None,
            {
                "p50_s": pct(stats.times, 0.5),
                "p99_s": p99,
                "requests": stats.sent,
                "failed": stats.failed,
                "seconds": wall,
            },
        ),
        Figure(
            "P4",
            "Temporal calls/s and API CPU under those pollers",
            f"{total_calls / wall:.1f} calls/s ({describes / wall:.1f} describes/s)",
            f"API {api_cpu / max(stats.sent, 1) * 1000:.2f} ms CPU per read; {_cpu_note(cpu)}",
            None,
            "calls follow changes, not pollers",
            None,
            {
                "temporal_calls_per_s": total_calls / wall,
                "describes_per_s": describes / wall,
                "api_cpu_per_s": api_cpu / wall,
                **{f"calls_{k}": v for k, v in made.items()},
            },
        ),
        Figure(
            "P4",
            "reports/s with those pollers vs without (P2, and again after)",
            f"{loaded:.2f}/s",
            f"{unloaded:.2f}/s ({alone:.2f} before, {after:.2f} after)",
            loaded / unloaded,
            ">= 0.95" if judged else "",
            loaded / unloaded >= 0.95 if judged else None,
            {"reports_per_s": loaded, "unloaded_before": alone, "unloaded_after": after},
        ),
    ]


async def _p4_streams(
    http: httpx.AsyncClient,
    smtp: RecordingSmtpServer,
    calls: TemporalCalls,
    meter: CpuMeter,
    token_list: list[str],
    options: RatioOptions,
    offset: int,
) -> list[Figure]:
    """The burst again, with `streams` SSE streams open on its reports (each
    report's share opened as it is POSTed, read until the final status)."""
    ids, owners = _burst(options, token_list, offset)
    before_calls = await calls.snapshot()
    meter.start()
    began = time.perf_counter()
    streams: list[asyncio.Task[int]] = []

    def open_streams(report_id: str) -> None:
        headers = {"Authorization": f"Bearer {owners[report_id]}"}
        path = f"/reports/{report_id}/events"
        streams.extend(
            asyncio.create_task(sse_events(str(http.base_url), path, headers))
            for _ in range(ids.index(report_id), options.streams, len(ids))
        )

    await _end_to_end(http, smtp, token_list, options, offset=offset, created=open_streams)
    async with asyncio.timeout(120):
        events = await asyncio.gather(*streams, return_exceptions=True)
    wall = time.perf_counter() - began
    cpu = meter.read(wall)
    made = TemporalCalls.api_calls(before_calls, await calls.snapshot())
    total_calls = sum(made.values())
    describes = made.get("DescribeWorkflowExecution", 0.0)
    delivered = [n for n in events if isinstance(n, int)]
    return [
        Figure(
            "P4",
            f"{options.streams} SSE streams open during P2's burst",
            f"{total_calls / wall:.1f} calls/s ({describes / wall:.1f} describes/s)",
            f"{len(delivered)} of {len(streams)} streams ran to the final status, "
            f"{sum(delivered)} events; {_cpu_note(cpu)}",
            None,
            "calls follow changes, not streams",
            None,
            {
                "streams": len(streams),
                "streams_completed": len(delivered),
                "events": sum(delivered),
                "temporal_calls_per_s": total_calls / wall,
                "describes_per_s": describes / wall,
                "api_cpu_per_s": cpu["API"],
            },
        )
    ]


@dataclass
class _PollStats:
    times: list[float] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    due_seconds: float = 0.0  # summed over the pollers: how long each polled
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _poll(
    base_url: str,
    owners: dict[str, str],
    ids: list[str],
    n: int,
    options: RatioOptions,
    stats: _PollStats,
) -> None:
    """One client reading its report's status once a second, on a connection of
    its own (as separate users have), the way a naive client does: no ETag."""
    report_id = ids[n % len(ids)]
    headers = {"Authorization": f"Bearer {owners[report_id]}"}
    conn = RawHttp(base_url)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(options.poll_seconds * n / options.pollers):
            await stats.stop.wait()  # spread the pollers over the second
    tick = first = time.perf_counter()
    try:
        while not stats.stop.is_set():
            stats.sent += 1
            began = time.perf_counter()
            try:
                ok = (await conn.request("GET", f"/reports/{report_id}", headers)).status == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            stats.times.append(time.perf_counter() - began)
            stats.failed += not ok
            tick += options.poll_seconds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, tick - time.perf_counter())):
                    await stats.stop.wait()
    finally:
        await conn.close()
    stats.due_seconds += time.perf_counter() - first
