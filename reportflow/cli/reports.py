"""`reportflow request` (through the API, with a progress bar) and `reportflow render`
(here, on the database and Chromium: for template work)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from reportflow.cli.options import DEFAULT_URL, day_option, quiet
from reportflow.core.config import get_settings

app = typer.Typer()

REQUEST_HELP = """\
Start a report for the token's user (or follow one with --report), show its
progress, print the PDF's URL and save the PDF with --output. The dates default
to the last 90 days. Ctrl-C asks whether to cancel the report or leave it
running; running the same command again follows the same report.
"""

EXIT_CODES_HELP = """\
exit codes:
  0    the report completed (and the PDF was saved, with --output)
  1    the report failed (its error type and message are printed),
       or its PDF could not be saved
  2    the API refused the request (bad token, bad range, too many
       requests, no such report, ...) or the options were wrong
  3    the report was cancelled
  4    gave up following after --timeout seconds; the report runs on
  5    the API could not be reached or answered with a server error
  130  interrupted with Ctrl-C (the report was cancelled or left running,
       as answered)
"""


@app.command(
    "request",
    short_help="start a report and follow it to its PDF with a progress bar",
    help=REQUEST_HELP,
    epilog=EXIT_CODES_HELP,
)
def request(
    token: Annotated[str, typer.Option(envvar="REPORTFLOW_TOKEN", help="API token")] = "",
    start: Annotated[date | None, day_option("first day")] = None,
    end: Annotated[date | None, day_option("last day")] = None,
    output: Annotated[Path | None, typer.Option(metavar="FILE", help="save the PDF here")] = None,
    url: Annotated[
        str,
        typer.Option(envvar="REPORTFLOW_URL", help="the API"),
    ] = DEFAULT_URL,
    report: Annotated[
        str | None, typer.Option(metavar="ID", help="follow this report; start nothing")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="give up following after this long"),
    ] = 600.0,
    kind: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="the report kind (GET /kinds); default transactions"),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="one of the kind's parameters (repeat it); a value is read as JSON "
            "when it is (30, true, [1,2]), else as text",
        ),
    ] = None,
) -> None:
    from reportflow.cli.request import RequestOptions, request_report

    quiet("httpx")  # the progress bar says it all
    try:
        params = parse_params(param or [])
    except ValueError as err:
        sys.stderr.write(f"reportflow request: {err}\n")
        raise typer.Exit(2) from None
    if params and not kind:
        sys.stderr.write("reportflow request: --param needs --kind NAME (see GET /kinds)\n")
        raise typer.Exit(2)
    options = RequestOptions(
        kind=kind,
        params=params,
        url=url,
        token=token,
        start=start,
        end=end,
        output=output,
        report_id=report,
        timeout=timeout,
    )
    code = asyncio.run(
        request_report(options, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)
    )
    raise typer.Exit(code)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`--param key=value` pairs; a value that is JSON (a number, true, a list) is
    sent as such, any other as text. The API validates them against the kind."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: write it as key=value")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@app.command(
    "render",
    short_help="render one report here (database + Chromium), no Temporal, no email",
    help="The worker's query and render steps on this machine, for template work. "
    "Reads DATABASE_URL (and CHROMIUM_EXECUTABLE for --pdf).",
)
def render(
    user: Annotated[str, typer.Option(help="the user whose transactions to report")],
    start: Annotated[date | None, day_option("first day")] = None,
    end: Annotated[date | None, day_option("last day")] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write the report's HTML here")
    ] = None,
    pdf: Annotated[Path | None, typer.Option(metavar="FILE", help="write the PDF here")] = None,
    kind: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="another report kind (REPORT_KINDS) than transactions"),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(metavar="KEY=VALUE", help="one of the kind's parameters")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write the kind's file here (any format)")
    ] = None,
) -> None:
    from pydantic import ValidationError
    from temporalio.exceptions import ApplicationError

    from reportflow.contract import ReportRequest
    from reportflow.local_render import render_locally

    if kind is not None and kind != "transactions":
        _render_kind(kind, param or [], user=user, html=html, output=output or pdf)
        return

    if html is None and pdf is None:
        sys.stderr.write(
            "reportflow render: say where to write it: --html FILE and/or --pdf FILE\n"
        )
        raise typer.Exit(2)
    try:  # the range rules of POST /reports: defaults, no future, at most 366 days
        first, last = ReportRequest.model_validate({"start": start, "end": end}).dates()
    except ValidationError as err:
        reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        sys.stderr.write(f"reportflow render: {reason}\n")
        raise typer.Exit(2) from None
    try:
        done = asyncio.run(
            render_locally(
                get_settings(), user_id=user, start=first, end=last, html_path=html, pdf_path=pdf
            )
        )
    except ApplicationError as err:
        sys.stderr.write(f"reportflow render: {err.message}\n")
        raise typer.Exit(1) from None
    written = [f"{html} ({done.html_bytes} bytes of HTML)"] if html else []
    if pdf:
        written.append(f"{pdf} ({done.pages} pages, {done.pdf_bytes} bytes)")
    sys.stdout.write(f"{done.report_id}: wrote {' and '.join(written)} in {done.seconds:.2f} s\n")


def _render_kind(
    kind: str, pairs: list[str], *, user: str, html: Path | None, output: Path | None
) -> None:
    """`reportflow render --kind NAME`: any kind's file here, for template work."""
    from pydantic import ValidationError
    from temporalio.exceptions import ApplicationError

    from reportflow.kinds import KindError
    from reportflow.local_render import render_kind_locally

    if html is None and output is None:
        sys.stderr.write("reportflow render: say where to write it: --output FILE or --html FILE\n")
        raise typer.Exit(2)
    try:
        done = asyncio.run(
            render_kind_locally(
                get_settings(), kind_name=kind, values=parse_params(pairs), user_id=user,
                html_path=html, output=output,
            )
        )  # fmt: skip
    except KeyError:
        sys.stderr.write(f"reportflow render: no report kind {kind!r} (see REPORT_KINDS)\n")
        raise typer.Exit(2) from None
    except (ValueError, KindError, ValidationError) as err:
        sys.stderr.write(f"reportflow render: {err}\n")
        raise typer.Exit(2) from None
    except ApplicationError as err:
        sys.stderr.write(f"reportflow render: {err.message}\n")
        raise typer.Exit(1) from None
    written = [f"{html} ({done.html_bytes} bytes of HTML)"] if html else []
    if output:
        written.append(f"{output} ({done.pdf_bytes} bytes)")
    sys.stdout.write(f"{done.report_id}: wrote {' and '.join(written)} in {done.seconds:.2f} s\n")
