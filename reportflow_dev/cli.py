"""`reportflow chaos` and `reportflow bench`: added to the `reportflow` command when
this development package is installed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from reportflow.cli.options import quiet

app = typer.Typer()

CHAOS_SCENARIOS = "worker-sigkill, temporal-restart, smtp-down, database-down, chromium-kill"


@app.command(
    "chaos",
    short_help="break parts of the service while reports run; table of lost and duplicated",
    help="Each run builds its own Temporal dev server, SMTP server, database, "
    "API and worker processes in a temporary directory, starts reports, injects the "
    f"fault and counts. Scenarios: {CHAOS_SCENARIOS}. Exits 1 if any report was "
    "lost or any email sent twice.",
)
def chaos(
    runs: Annotated[int, typer.Option(help="runs of each scenario")] = 1,
    scenarios: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario", metavar="NAME", help="scenarios to run (repeatable; default all)"
        ),
    ] = None,
    reports: Annotated[int, typer.Option(help="reports per run")] = 3,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="a PostgreSQL server to create each run's database on (default: SQLite files)",
        ),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="keep every run's logs and data here")
    ] = None,
) -> None:
    from reportflow_dev.chaos import SCENARIOS, ChaosOptions, run_chaos

    unknown = [name for name in scenarios or [] if name not in SCENARIOS]
    if unknown:
        sys.stderr.write(
            f"reportflow chaos: no scenario {', '.join(unknown)}; "
            f"choose from {', '.join(SCENARIOS)}\n"
        )
        raise typer.Exit(2)
    if runs < 1 or reports < 1:
        sys.stderr.write("reportflow chaos: --runs and --reports must be at least 1\n")
        raise typer.Exit(2)
    quiet("httpx", "uvicorn.access")  # one line per HTTP call would bury the harness's log
    options = ChaosOptions(
        runs=runs,
        scenarios=scenarios or list(SCENARIOS),
        reports=reports,
        postgres_url=postgres_url,
        workdir=workdir,
    )
    try:
        code = asyncio.run(run_chaos(options, sys.stdout))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("reportflow chaos: interrupted; the runs' servers were stopped\n")
        code = 130
    raise typer.Exit(code)


@app.command(
    "bench",
    short_help="measure API latency, reports end to end and each stage; print a table",
    help="Runs a private stack (Temporal dev server, SMTP, SQLite, API, one "
    "worker) in a temporary directory; nothing of yours is touched.",
)
def bench(
    users: Annotated[int, typer.Option(help="seeded users")] = 20,
    requests: Annotated[int, typer.Option(help="API calls timed")] = 40,
    reports: Annotated[int, typer.Option(help="reports at once")] = 20,
    samples: Annotated[int, typer.Option(help="query/render samples")] = 10,
    quick: Annotated[bool, typer.Option("--quick", help="tiny numbers, for a smoke run")] = False,
    capacity: Annotated[
        list[int] | None,
        typer.Option(
            metavar="N",
            help="then estimate, from this run's figures, what N reports a day need "
            "(worker hosts, Temporal actions and history); several N give several rows",
        ),
    ] = None,
    peak_factor: Annotated[
        float,
        typer.Option(help="peak rate over the daily average (3: a day's reports in 8 hours)"),
    ] = 3.0,
    host_cores: Annotated[
        int | None, typer.Option(help="cores per worker host (default: this machine's)")
    ] = None,
    ratios: Annotated[
        bool, typer.Option("--ratios", help="only the ratios (P1 to P8), not the parts")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="JSON instead of tables")] = False,
    postgres_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="P5 and P8 on PostgreSQL too, in scratch databases"),
    ] = None,
) -> None:
    from reportflow_dev.bench import BenchOptions, print_table, run_bench
    from reportflow_dev.bench_figures import print_ratios, ratios_report
    from reportflow_dev.bench_status import RatioOptions, run_ratios
    from reportflow_dev.capacity import estimate, format_estimates

    volumes = capacity or []
    if (
        any(n < 0 for n in volumes)
        or peak_factor < 1
        or (host_cores is not None and host_cores < 1)
    ):
        sys.stderr.write(
            "reportflow bench: --capacity takes reports a day (>= 0), --peak-factor a "
            "factor >= 1, --host-cores a count >= 1\n"
        )
        raise typer.Exit(2)
    options = BenchOptions(users=users, requests=requests, reports=reports, samples=samples)
    ratio_options = RatioOptions(postgres_url=postgres_url)
    if quick:
        options = BenchOptions(users=3, requests=6, reports=3, samples=2, ceiling_reports=10)
        ratio_options = RatioOptions(
            users=4,
            reports=4,
            starts=(4, 4),
            pollers=10,
            many_pollers=20,
            streams=20,
            table_rows=(10_000, 50_000),
            export_rows=20_000,
            start_rates=(5, 20),
            postgres_url=postgres_url,
        )
    quiet("httpx", "uvicorn.access")
    result = None if ratios else asyncio.run(run_bench(options))
    rows = result.rows if result is not None else []
    # The ratios are the slow part: `--quick` alone skips them.
    run_them = ratios or json or not quick
    figures = asyncio.run(run_ratios(ratio_options)) if run_them else []
    if json:
        sys.stdout.write(ratios_report(figures, rows) + "\n")
        return
    if rows:
        print_table(rows)
        sys.stdout.write("\n")
    if figures:
        print_ratios(figures)
    if volumes and result is not None:
        measured = result.figures()
        estimates = [
            estimate(measured, n, peak_factor=peak_factor, host_cores=host_cores) for n in volumes
        ]
        sys.stdout.write("\n" + format_estimates(measured, estimates))
