"""What the person sees while `reportflow request` follows a report: the progress line.

Its text is part of the command's contract: off a terminal each change is one
plain line (`[########------------]  40%  rendering`) that scripts and the tests
read, and on a terminal it is that same line redrawn in place. rich measures
the terminal and cuts the line to its width in cells (a wide character takes
two; cutting by characters would wrap the line and break the redraw). rich's
Progress draws its own bar glyphs, refreshes from a thread, hides the cursor and
prints nothing per change off a terminal, so it would change that output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

BAR_WIDTH = 20

# What a step waiting to be retried means to the person watching.
_RETRY_WORDS = {
    "query": "database unavailable",
    "render": "PDF rendering failed",
    "send_email": "email server unavailable",
}

_REPLY = re.compile(r"""\((?P<code>\d{3}), ['"](?P<text>.*)['"]\)""")


def retry_notice(retry: Mapping[str, Any], now: datetime) -> str:
    """`email server unavailable (421 ...), next try in 12 s, attempt 3/6`."""
    activity = str(retry.get("activity") or "a step")
    words = _RETRY_WORDS.get(activity, f"{activity} failed")
    error = str(retry.get("last_error") or "").strip().splitlines()
    if error:
        # A server reply as Python shows it, "(421, 'Service not available')", reads "421 ...".
        reply = _REPLY.fullmatch(error[0])
        reason = f"{reply['code']} {reply['text']}" if reply else error[0]
        words += f" ({reason if len(reason) <= 60 else reason[:59] + '…'})"
    next_at = retry.get("next_attempt_at")
    if next_at:
        when = datetime.fromisoformat(str(next_at).replace("Z", "+00:00"))
        seconds = round((when - now).total_seconds())
        words += f", next try in {seconds} s" if seconds > 0 else ", trying again now"
    attempt, maximum = int(retry.get("attempt") or 1), int(retry.get("maximum_attempts") or 0)
    # Temporal's maximum of 0 means "no limit".
    return words + (f", attempt {attempt}/{maximum}" if maximum else f", attempt {attempt}")


def status_line(doc: Mapping[str, Any], *, now: datetime, width: int = BAR_WIDTH) -> str:
    """One line of progress: `[########------------]  40%  rendering`, then any retry."""
    progress = min(max(int(doc.get("progress") or 0), 0), 100)
    filled = progress * width // 100
    line = f"[{'#' * filled}{'-' * (width - filled)}] {progress:3d}%  {doc.get('stage', '?')}"
    if doc.get("retry"):
        line += f"  {retry_notice(doc['retry'], now)}"
    return line


class ProgressLine:
    """The progress display on stderr: one redrawn line on a terminal, else a line per change."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._console = Console(file=stream)  # the terminal's width (or COLUMNS)
        self._last = ""
        self._open = False  # a redrawn line is on screen and not yet ended

    def show(self, doc: Mapping[str, Any], now: datetime | None = None) -> None:
        line = status_line(doc, now=now or datetime.now(UTC))
        if line == self._last:
            return
        self._last = line
        if self.tty:
            # A wrapped line cannot be redrawn with \r; leave room for the "^C" a terminal echoes.
            shown = Text(line)
            shown.truncate(max(self._console.width - 3, 10), overflow="crop")
            self.stream.write(f"\r{shown.plain}\x1b[K")
            self._open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, text: str, end: str = "\n") -> None:
        """A notice on a line of its own (ending the bar's line first)."""
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + end)
        self.stream.flush()
