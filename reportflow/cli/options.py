"""What several commands share: how days and moments are read, quieter loggers."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import typer

DEFAULT_URL = "http://localhost:8000"


def parse_day(text: str) -> date:
    """A calendar day written YYYY-MM-DD (`--start`, `--end`)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def day_option(help: str) -> Any:
    """`--start` / `--end`: a day, checked as it is read."""
    return typer.Option(parser=parse_day, metavar="YYYY-MM-DD", help=help)


def parse_since(text: str) -> datetime:
    """A day or a moment (`--since`); without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date or time; write YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def quiet(*loggers: str) -> None:
    """Keep these loggers to warnings (one line per HTTP call would bury the output)."""
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
