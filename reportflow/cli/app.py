"""The `reportflow` command: the groups of this package in one Typer app, and main()."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from reportflow.cli import certs, database, deploy, dlq, reports, schedule, serve, tokens
from reportflow.core.logs import setup_logging

app = typer.Typer(
    name="reportflow",
    help="Durable background report generation on Temporal.",
    add_completion=False,
    no_args_is_help=True,
)
for group in (serve, database, tokens, reports, dlq, schedule, certs, deploy):
    app.add_typer(group.app)

# `reportflow chaos` and `reportflow bench` come with the development package, which a
# checkout has and the wheel and the image do not.
if importlib.util.find_spec("reportflow_dev") is not None:
    from reportflow_dev.cli import app as dev_tools

    app.add_typer(dev_tools)

# Options that take several values at once (argparse's nargs="+"): `--capacity 10000
# 1000000`. Click reads one value per occurrence, so main() repeats the option name.
MANY_VALUES = frozenset({"--capacity", "--scenario"})


def _is_option(arg: str) -> bool:
    """`-5` and `-0.5` are values (as for argparse), `--user` and `-h` are options."""
    if not arg.startswith("-"):
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False


def repeat_many_values(args: Sequence[str]) -> list[str]:
    """`--capacity 1 2 --quick` -> `--capacity 1 --capacity 2 --quick`."""
    out: list[str] = []
    option: str | None = None  # the option whose values are being read
    count = 0
    for arg in args:
        if arg == "--":
            option = None
        elif arg in MANY_VALUES:
            option, count = arg, 0
        elif option is not None and not _is_option(arg):
            if count:
                out.append(option)
            count += 1
        else:
            option = None
        out.append(arg)
    return out


def run() -> NoReturn:
    """The console script: main(), then out without the interpreter's teardown.

    The Temporal client's native threads may still call into Python while the
    interpreter finalizes, which aborts a finished command ("PyGILState_Release
    ... finalizing", temporalio/sdk-python#300). Everything is flushed first.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = repeat_many_values(sys.argv[1:] if argv is None else argv)
    try:
        typer.main.get_command(app).main(args=args, prog_name="reportflow")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        raise  # a message (reportflow.core.config.require_secrets): Python prints it, exit 1
    return 0
