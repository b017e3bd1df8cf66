"""`reportflow dlq list|redrive` (failed reports) and `reportflow reports cancel`
(running ones, in bulk), straight to Temporal; `dlq cancel` is its old name."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Annotated

import typer

from reportflow.cli.options import parse_since
from reportflow.core.config import get_settings

app = typer.Typer()
dlq = typer.Typer(no_args_is_help=True)
app.add_typer(
    dlq,
    name="dlq",
    short_help="failed reports (the dead-letter queue): list them, run them again",
    help="Talks to Temporal directly (TEMPORAL_ADDRESS etc.), like the admin API.",
)

# The filter of redrive and cancel (reportflow.service.dead_letters.Filter) and its two switches.
All = Annotated[bool, typer.Option("--all", help="no filter: every matching report")]
User = Annotated[str | None, typer.Option(help="only this user's reports")]
Since = Annotated[
    datetime | None,
    typer.Option(parser=parse_since, metavar="WHEN", help="started at or after (UTC)"),
]
Query = Annotated[
    str | None, typer.Option(metavar="VISIBILITY", help="any Temporal visibility clause, ANDed")
]
Kind = Annotated[str | None, typer.Option(metavar="NAME", help="only reports of this kind")]
Yes = Annotated[bool, typer.Option("--yes", help="act (without it: count and list)")]


@dlq.command("list", help="every failed report with kind, reason, stage, attempts and time")
def list_(kind: Kind = None) -> None:
    from reportflow.cli import failed

    raise typer.Exit(asyncio.run(failed.list_failed(get_settings(), kind)))


@dlq.command("redrive", help="run failed reports again (same IDs)")
def redrive(
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID", help="report IDs")] = None,
    all_: All = False,
    user: User = None,
    since: Since = None,
    reason: Annotated[
        str | None,
        typer.Option(help="only failed reports with this reason code, e.g. SmtpRejected"),
    ] = None,
    query: Query = None,
    kind: Kind = None,
    yes: Yes = False,
) -> None:
    from reportflow.cli import failed
    from reportflow.service.dead_letters import Filter

    settings = get_settings()
    if ids:
        raise typer.Exit(asyncio.run(failed.redrive_reports(settings, ids)))
    where = Filter(user=user, since=since, reason=reason, query=query, kind=kind)
    if not where.any and not all_:
        sys.stderr.write("reportflow dlq redrive: name report IDs, give a filter, or pass --all\n")
        raise typer.Exit(2)
    raise typer.Exit(asyncio.run(failed.redrive_matching(settings, where, yes=yes)))


reports = typer.Typer(no_args_is_help=True)
app.add_typer(
    reports,
    name="reports",
    short_help="act on reports in bulk: cancel the running ones a filter matches",
    help="Talks to Temporal directly (TEMPORAL_ADDRESS etc.), like the admin API.",
)

DEPRECATED_CANCEL = (
    "reportflow dlq cancel is deprecated: it is `reportflow reports cancel` now (same options)\n"
)


def _cancel(
    command: str, all_: bool, user: str | None, since: datetime | None, note: str | None,
    query: str | None, yes: bool,
) -> None:  # fmt: skip
    from reportflow.cli import failed
    from reportflow.service.dead_letters import Filter

    where = Filter(user=user, since=since, reason=note, query=query)
    if not where.any and not all_:
        sys.stderr.write(f"{command}: give a filter (--user, --since, --query) or --all\n")
        raise typer.Exit(2)
    raise typer.Exit(asyncio.run(failed.cancel_matching(get_settings(), where, yes=yes)))


Note = Annotated[str | None, typer.Option(help="a note recorded with the batch operation")]


@reports.command("cancel", help="cancel running reports that match a filter (one batch operation)")
def cancel(
    all_: All = False,
    user: User = None,
    since: Since = None,
    reason: Note = None,
    query: Query = None,
    yes: Yes = False,
) -> None:
    _cancel("reportflow reports cancel", all_, user, since, reason, query, yes)


@dlq.command("cancel", help="deprecated: use `reportflow reports cancel` (same options)")
def dlq_cancel(
    all_: All = False,
    user: User = None,
    since: Since = None,
    reason: Note = None,
    query: Query = None,
    yes: Yes = False,
) -> None:
    sys.stderr.write(DEPRECATED_CANCEL)
    _cancel("reportflow dlq cancel", all_, user, since, reason, query, yes)
