"""`reportflow`: one command for every part of the service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from reportflow.config import get_settings, require_secrets
from reportflow.logs import setup_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from reportflow.tokens import TokenInfo


def _dev(args: argparse.Namespace) -> int:
    from reportflow import tracing
    from reportflow.dev import run_dev

    tracing.configure("reportflow")
    asyncio.run(run_dev(get_settings(), public=args.public))
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from reportflow import tracing

    tracing.configure("reportflow-api")
    settings = get_settings()
    require_secrets(settings, "api")
    uvicorn.run(
        "reportflow.api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from reportflow import tracing
    from reportflow.worker import run_worker

    tracing.configure("reportflow-worker")
    require_secrets(get_settings(), "worker")
    asyncio.run(run_worker(get_settings()))
    return 0


def _seed(args: argparse.Namespace) -> int:
    from reportflow.db import create_engine, ensure_schema
    from reportflow.seed import seed

    async def go() -> None:
        settings = get_settings()
        engine = create_engine(settings.database_url)
        await ensure_schema(engine, migrate=settings.is_dev)
        summary = await seed(engine, users=args.users, days=args.days)
        await engine.dispose()
        sys.stdout.write(
            f"created {summary.users_created} users and "
            f"{summary.transactions_created} transactions\n"
        )

    asyncio.run(go())
    return 0


def _token(args: argparse.Namespace) -> int:
    from reportflow import tokens
    from reportflow.db import create_engine, ensure_schema

    settings = get_settings()

    async def go() -> int:
        engine = create_engine(settings.database_url)
        await ensure_schema(engine, migrate=settings.is_dev)
        try:
            if args.token_command == "create":
                return await _token_create(engine, args)
            if args.token_command == "list":
                _token_table(await tokens.list_tokens(engine))
                return 0
            revoked = await tokens.revoke_token(engine, args.id_or_token)
            from reportflow.audit import audit, operator

            audit(operator(), "token revoke", revoked)
            sys.stdout.write(f"revoked {revoked}\n")
            return 0
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except tokens.TokenError as err:
        sys.stderr.write(f"reportflow token: {err}\n")
        return 2


async def _token_create(engine: AsyncEngine, args: argparse.Namespace) -> int:
    from reportflow.tokens import create_token, hash_token, token_id

    settings = get_settings()
    days = args.days or (settings.admin_token_days if args.admin else settings.user_token_days)
    token = await create_token(
        engine,
        user_id=args.user,
        admin=args.admin,
        label=args.label,
        lifetime=timedelta(days=days),
    )
    # The token alone on stdout (scripts capture it); its ID for list/revoke on stderr.
    sys.stdout.write(token + "\n")
    sys.stderr.write(
        f"token ID {token_id(hash_token(token))}, expires in {days} days; "
        "it is shown only this once\n"
    )
    return 0


def _token_table(rows: Sequence[TokenInfo]) -> None:
    def when(moment: datetime | None) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"

    now = datetime.now(UTC)
    sys.stdout.write(
        f"{'ID':<17} {'FOR':<22} {'STATE':<8} {'CREATED':<16}  {'EXPIRES':<16}  "
        f"{'LAST USED':<16}  LABEL\n"
    )
    for row in rows:
        who = "admin" if row.is_admin else f"user {row.user_id}"
        sys.stdout.write(
            f"{row.id:<17} {who:<22} {row.state(now):<8} {when(row.created_at):<16}  "
            f"{when(row.expires_at):<16}  {when(row.last_used_at):<16}  {row.label}\n"
        )


def _keygen(args: argparse.Namespace) -> int:
    import secrets

    from reportflow.codec import new_key_entry

    sys.stdout.write(
        f"SECRET_KEY={secrets.token_urlsafe(32)}\n"
        f"PAYLOAD_ENCRYPTION_KEYS={new_key_entry(args.key_id)}\n"
    )
    return 0


def _db(args: argparse.Namespace) -> int:
    from reportflow import migrations
    from reportflow.db import create_engine

    async def go() -> str:
        engine = create_engine(get_settings().database_url)
        try:
            if args.db_command == "upgrade":
                await migrations.upgrade(engine, args.revision)
            return await migrations.current(engine) or "none (an empty database)"
        finally:
            await engine.dispose()

    revision = asyncio.run(go())
    sys.stdout.write(f"database at revision {revision} (newest: {migrations.head()})\n")
    return 0


def _request(args: argparse.Namespace) -> int:
    from reportflow.client import RequestOptions, request_report

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the progress bar says it all
    options = RequestOptions(
        url=args.url,
        token=args.token or "",
        start=args.start,
        end=args.end,
        output=args.output,
        report_id=args.report,
        timeout=args.timeout,
    )
    return asyncio.run(
        request_report(options, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)
    )


def _dlq(args: argparse.Namespace) -> int:
    from reportflow import dlq
    from reportflow.service.dead_letters import Filter

    settings = get_settings()
    if args.dlq_command == "list":
        return asyncio.run(dlq.list_failed(settings))
    where = Filter(user=args.user, since=args.since, reason=args.reason, query=args.query)
    if args.dlq_command == "cancel":
        if not where.any and not args.all:
            sys.stderr.write(
                "reportflow dlq cancel: give a filter (--user, --since, --query) or --all\n"
            )
            return 2
        return asyncio.run(dlq.cancel_matching(settings, where, yes=args.yes))
    if args.ids:
        return asyncio.run(dlq.redrive_reports(settings, args.ids))
    if not where.any and not args.all:
        sys.stderr.write("reportflow dlq redrive: name report IDs, give a filter, or pass --all\n")
        return 2
    return asyncio.run(dlq.redrive_matching(settings, where, yes=args.yes))


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date or time; write YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bulk_options(parser: argparse.ArgumentParser, reason_help: str) -> None:
    parser.add_argument("--all", action="store_true", help="no filter: every matching report")
    parser.add_argument("--user", help="only this user's reports")
    parser.add_argument("--since", type=_since, metavar="WHEN", help="started at or after (UTC)")
    parser.add_argument("--reason", help=reason_help)
    parser.add_argument(
        "--query", metavar="VISIBILITY", help="any Temporal visibility clause, ANDed"
    )
    parser.add_argument("--yes", action="store_true", help="act (without it: count and list)")


def _schedule(args: argparse.Namespace) -> int:
    """Operators' front door to reportflow.schedules (straight to Temporal, like dlq)."""
    from pydantic import ValidationError

    from reportflow import schedules
    from reportflow.temporal import connect

    action = args.schedule_command
    try:
        request = (
            schedules.ScheduleRequest(
                every=args.every,
                day=args.day,
                time=args.time,
                timezone=args.timezone,
                backfill=args.backfill,
            )
            if action == "create"
            else None
        )
    except ValidationError as err:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        sys.stderr.write(f"reportflow schedule: {reasons}\n")
        return 2

    async def go() -> int:
        client = await connect()
        if request is not None:
            docs = [
                await schedules.create_schedule(
                    client, get_settings(), user_id=args.user, request=request
                )
            ]
        elif action == "list":
            docs = await schedules.list_schedules(client, user_id=args.user)
        elif action == "delete":
            await schedules.delete_schedule(client, args.id, user_id=None)
            sys.stdout.write(f"{args.id}: deleted\n")
            return 0
        else:
            docs = [
                await schedules.pause_schedule(
                    client, args.id, user_id=None, paused=action == "pause"
                )
            ]
        for doc in docs:
            when = doc.next_run_at.strftime("%Y-%m-%d %H:%M UTC") if doc.next_run_at else "-"
            state = "paused" if doc.paused else f"next {when}"
            sys.stdout.write(
                f"{doc.id}  every {doc.every} on {doc.day} at {doc.time} {doc.timezone}  {state}\n"
            )
        if not docs:
            sys.stdout.write("no schedules\n")
        return 0

    try:
        return asyncio.run(go())
    except schedules.ScheduleNotFound:
        sys.stderr.write(
            f"reportflow schedule: no schedule {args.id!r}; see `reportflow schedule list`\n"
        )
        return 1


def _render(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from temporalio.exceptions import ApplicationError

    from reportflow.api.schemas import ReportRequest
    from reportflow.local_render import render_locally

    if args.html is None and args.pdf is None:
        sys.stderr.write(
            "reportflow render: say where to write it: --html FILE and/or --pdf FILE\n"
        )
        return 2
    try:  # the range rules of POST /reports: defaults, no future, at most 366 days
        start, end = ReportRequest.model_validate({"start": args.start, "end": args.end}).dates()
    except ValidationError as err:
        reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        sys.stderr.write(f"reportflow render: {reason}\n")
        return 2
    try:
        done = asyncio.run(
            render_locally(
                get_settings(),
                user_id=args.user,
                start=start,
                end=end,
                html_path=args.html,
                pdf_path=args.pdf,
            )
        )
    except ApplicationError as err:
        sys.stderr.write(f"reportflow render: {err.message}\n")
        return 1
    written = [f"{args.html} ({done.html_bytes} bytes of HTML)"] if args.html else []
    if args.pdf:
        written.append(f"{args.pdf} ({done.pages} pages, {done.pdf_bytes} bytes)")
    sys.stdout.write(f"{done.report_id}: wrote {' and '.join(written)} in {done.seconds:.2f} s\n")
    return 0


CHAOS_SCENARIOS = "worker-sigkill, temporal-restart, smtp-down, database-down, chromium-kill"


def _chaos(args: argparse.Namespace) -> int:
    from reportflow.chaos import SCENARIOS, ChaosOptions, run_chaos

    unknown = [name for name in args.scenarios or [] if name not in SCENARIOS]
    if unknown:
        sys.stderr.write(
            f"reportflow chaos: no scenario {', '.join(unknown)}; "
            f"choose from {', '.join(SCENARIOS)}\n"
        )
        return 2
    if args.runs < 1 or args.reports < 1:
        sys.stderr.write("reportflow chaos: --runs and --reports must be at least 1\n")
        return 2
    # One line per HTTP call would bury the harness's own log.
    for noisy in ("httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = ChaosOptions(
        runs=args.runs,
        scenarios=args.scenarios or list(SCENARIOS),
        reports=args.reports,
        postgres_url=args.postgres_url,
        workdir=args.workdir,
    )
    try:
        return asyncio.run(run_chaos(options, sys.stdout))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("reportflow chaos: interrupted; the runs' servers were stopped\n")
        return 130


def _bench(args: argparse.Namespace) -> int:
    from reportflow.bench import BenchOptions, print_table, run_bench
    from reportflow.bench_figures import print_ratios, ratios_report
    from reportflow.bench_status import RatioOptions, run_ratios
    from reportflow.capacity import estimate, format_estimates

    if (
        any(n < 0 for n in args.capacity or [])
        or args.peak_factor < 1
        or (args.host_cores is not None and args.host_cores < 1)
    ):
        sys.stderr.write(
            "reportflow bench: --capacity takes reports a day (>= 0), --peak-factor a "
            "factor >= 1, --host-cores a count >= 1\n"
        )
        return 2
    options = BenchOptions(
        users=args.users, requests=args.requests, reports=args.reports, samples=args.samples
    )
    ratio_options = RatioOptions()
    if args.quick:
        options = BenchOptions(users=3, requests=6, reports=3, samples=2, ceiling_reports=10)
        ratio_options = RatioOptions(
            users=4,
            reports=4,
            starts=4,
            pollers=10,
            table_rows=(10_000, 50_000),
            start_rates=(5, 20),
        )
    for noisy in ("httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = None if args.ratios else asyncio.run(run_bench(options))
    rows = result.rows if result is not None else []
    # The ratios are the slow part: `--quick` alone skips them.
    run_them = args.ratios or args.json or not args.quick
    figures = asyncio.run(run_ratios(ratio_options)) if run_them else []
    if args.json:
        sys.stdout.write(ratios_report(figures, rows) + "\n")
        return 0
    if rows:
        print_table(rows)
        sys.stdout.write("\n")
    if figures:
        print_ratios(figures)
    if args.capacity and result is not None:
        measured = result.figures()
        estimates = [
            estimate(measured, n, peak_factor=args.peak_factor, host_cores=args.host_cores)
            for n in args.capacity
        ]
        sys.stdout.write("\n" + format_estimates(measured, estimates))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportflow",
        description="Durable background report generation on Temporal.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev", help="run everything locally: Temporal, SMTP sink, worker, API, demo data"
    )
    dev.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback HOST (the outbox stays loopback-only)",
    )
    dev.set_defaults(func=_dev)

    api = commands.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", help="address to bind (default HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (default PORT or 8000)")
    api.set_defaults(func=_api)

    commands.add_parser("worker", help="run a Temporal worker").set_defaults(func=_worker)

    seed = commands.add_parser("seed", help="fill the database with demo users and transactions")
    seed.add_argument("--users", type=int, default=5, help="how many users (default 5)")
    seed.add_argument("--days", type=int, default=120, help="days of history (default 120)")
    seed.set_defaults(func=_seed)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create", help="mint a token and print it once (its ID goes to stderr)"
    )
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the user the token belongs to")
    who.add_argument("--admin", action="store_true", help="an admin token (all users' reports)")
    create.add_argument("--label", default="", help="a note to remember the token by")
    create.add_argument(
        "--days",
        type=int,
        metavar="N",
        help="valid for N days (default USER_TOKEN_DAYS=90, ADMIN_TOKEN_DAYS=7)",
    )
    create.set_defaults(func=_token)
    token_commands.add_parser(
        "list", help="every token: ID, user or admin, state, created, expires, last used, label"
    ).set_defaults(func=_token)
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token at once, on every API replica"
    )
    revoke.add_argument("id_or_token", metavar="ID|TOKEN", help="a token ID (tok_…) or the token")
    revoke.set_defaults(func=_token)

    keygen = commands.add_parser(
        "keygen",
        help="print a random SECRET_KEY and a PAYLOAD_ENCRYPTION_KEYS entry",
        description="To rotate the payload key, put the new entry first in "
        "PAYLOAD_ENCRYPTION_KEYS and keep the old ones after it: they still decrypt.",
    )
    keygen.add_argument(
        "--key-id",
        default=f"k{date.today():%Y%m%d}",
        help="the new key's ID (default k<today>)",
    )
    keygen.set_defaults(func=_keygen)

    db = commands.add_parser(
        "db",
        help="database migrations (Alembic): upgrade, current",
        description="Runs on DATABASE_URL. Production processes never create tables: "
        "run `reportflow db upgrade` (the compose `migrate` job) before each deploy.",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="migrate to the newest revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default head)")
    upgrade.set_defaults(func=_db)
    db_commands.add_parser("current", help="print the database's revision").set_defaults(func=_db)

    from reportflow import client

    request = commands.add_parser(
        "request",
        help="start a report and follow it to its PDF with a progress bar",
        description=client.DESCRIPTION,
        epilog=client.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    request.add_argument(
        "--token",
        default=os.environ.get("REPORTFLOW_TOKEN"),
        help="API token (default REPORTFLOW_TOKEN)",
    )
    request.add_argument("--start", type=client.parse_day, metavar="YYYY-MM-DD", help="first day")
    request.add_argument("--end", type=client.parse_day, metavar="YYYY-MM-DD", help="last day")
    request.add_argument("--output", type=Path, metavar="FILE", help="save the PDF here")
    request.add_argument(
        "--url",
        default=client.default_url(),
        help=f"the API (default REPORTFLOW_URL or {client.DEFAULT_URL})",
    )
    request.add_argument("--report", metavar="ID", help="follow this report; start nothing")
    request.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up following after this long (default 600)",
    )
    request.set_defaults(func=_request)
    render = commands.add_parser(
        "render",
        help="render one report here (database + Chromium), no Temporal, no email",
        description="The worker's query and render steps on this machine, for template work. "
        "Reads DATABASE_URL (and CHROMIUM_EXECUTABLE for --pdf).",
    )
    render.add_argument("--user", required=True, help="the user whose transactions to report")
    render.add_argument("--start", type=client.parse_day, metavar="YYYY-MM-DD", help="first day")
    render.add_argument("--end", type=client.parse_day, metavar="YYYY-MM-DD", help="last day")
    render.add_argument("--html", type=Path, metavar="FILE", help="write the report's HTML here")
    render.add_argument("--pdf", type=Path, metavar="FILE", help="write the PDF here")
    render.set_defaults(func=_render)

    dlq = commands.add_parser(
        "dlq",
        help="failed reports (the dead-letter queue): list them, run them again",
        description="Talks to Temporal directly (TEMPORAL_ADDRESS etc.), like the admin API.",
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_commands.add_parser(
        "list", help="every failed report with reason, stage, attempts and time"
    ).set_defaults(func=_dlq)
    redrive = dlq_commands.add_parser("redrive", help="run failed reports again (same IDs)")
    redrive.add_argument("ids", nargs="*", metavar="ID", help="report IDs")
    _bulk_options(redrive, "only failed reports with this reason code, e.g. SmtpRejected")
    redrive.set_defaults(func=_dlq)
    cancel = dlq_commands.add_parser(
        "cancel", help="cancel running reports that match a filter (one batch operation)"
    )
    _bulk_options(cancel, "a note recorded with the batch operation")
    cancel.set_defaults(func=_dlq)

    schedule = commands.add_parser(
        "schedule",
        help="reports sent every week or month: create, list, pause, unpause, delete",
        description="Talks to Temporal directly (TEMPORAL_ADDRESS etc.), like dlq.",
    )
    schedule_commands = schedule.add_subparsers(
        dest="schedule_command", required=True, metavar="ACTION"
    )
    screate = schedule_commands.add_parser("create", help="schedule a user's report")
    screate.add_argument("--user", required=True, help="whose report")
    screate.add_argument("--every", required=True, choices=["week", "month"])
    screate.add_argument("--day", required=True, help="monday..sunday, or 1-28 for a month")
    screate.add_argument("--time", default="06:00", help="local time HH:MM (default 06:00)")
    screate.add_argument("--timezone", default="UTC", help="IANA zone (default UTC)")
    screate.add_argument(
        "--backfill",
        type=int,
        default=0,
        metavar="N",
        help="also send the N past periods now (default 0: none)",
    )
    slist = schedule_commands.add_parser("list", help="schedules (one user's with --user)")
    slist.add_argument("--user", help="only this user's")
    for action in ("pause", "unpause", "delete"):
        sub = schedule_commands.add_parser(action, help=f"{action} a schedule")
        sub.add_argument("id", metavar="ID", help="the schedule ID")
    for sub in schedule_commands.choices.values():
        sub.set_defaults(func=_schedule)

    chaos = commands.add_parser(
        "chaos",
        help="break parts of the service while reports run; table of lost and duplicated",
        description="Each run builds its own Temporal dev server, SMTP server, database, "
        "API and worker processes in a temporary directory, starts reports, injects the "
        f"fault and counts. Scenarios: {CHAOS_SCENARIOS}. Exits 1 if any report was "
        "lost or any email sent twice.",
    )
    chaos.add_argument("--runs", type=int, default=1, help="runs of each scenario (default 1)")
    chaos.add_argument(
        "--scenario",
        dest="scenarios",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="scenarios to run (repeatable; default all)",
    )
    chaos.add_argument("--reports", type=int, default=3, help="reports per run (default 3)")
    chaos.add_argument(
        "--postgres-url",
        metavar="URL",
        help="a PostgreSQL server to create each run's database on (default: SQLite files)",
    )
    chaos.add_argument(
        "--workdir", type=Path, metavar="DIR", help="keep every run's logs and data here"
    )
    chaos.set_defaults(func=_chaos)
    bench = commands.add_parser(
        "bench",
        help="measure API latency, reports end to end and each stage; print a table",
        description="Runs a private stack (Temporal dev server, SMTP, SQLite, API, one "
        "worker) in a temporary directory; nothing of yours is touched.",
    )
    bench.add_argument("--users", type=int, default=20, help="seeded users (default 20)")
    bench.add_argument("--requests", type=int, default=40, help="API calls timed (default 40)")
    bench.add_argument("--reports", type=int, default=20, help="reports at once (default 20)")
    bench.add_argument("--samples", type=int, default=10, help="query/render samples")
    bench.add_argument("--quick", action="store_true", help="tiny numbers, for a smoke run")
    bench.add_argument(
        "--capacity",
        type=int,
        nargs="+",
        metavar="N",
        help="then estimate, from this run's figures, what N reports a day need "
        "(worker hosts, Temporal actions and history); several N give several rows",
    )
    bench.add_argument(
        "--peak-factor",
        type=float,
        default=3.0,
        help="peak rate over the daily average (default 3: a day's reports in 8 hours)",
    )
    bench.add_argument(
        "--host-cores", type=int, help="cores per worker host (default: this machine's)"
    )
    bench.add_argument(
        "--ratios", action="store_true", help="only the ratios (P1 to P7), not the parts"
    )
    bench.add_argument("--json", action="store_true", help="JSON instead of tables")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
