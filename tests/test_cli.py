"""The `reportflow` command line itself: what argparse's `nargs="+"` options became."""

from __future__ import annotations

import subprocess
import sys

from reportflow.cli.app import repeat_many_values


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bulk_cancel_is_reports_cancel_and_the_old_name_says_so() -> None:
    new = _run("reports", "cancel")  # no filter: refused before Temporal is asked
    assert new.returncode == 2 and "reportflow reports cancel: give a filter" in new.stderr
    assert "deprecated" not in new.stderr
    old = _run("dlq", "cancel")
    assert old.returncode == 2
    first, second = old.stderr.splitlines()[:2]
    assert first.startswith("reportflow dlq cancel is deprecated") and "reports cancel" in first
    assert second.startswith("reportflow dlq cancel: give a filter")


def test_an_option_with_several_values_is_repeated_for_each() -> None:
    args = ["bench", "--quick", "--capacity", "10000", "1000000", "--json"]

    assert repeat_many_values(args) == [
        "bench",
        "--quick",
        "--capacity",
        "10000",
        "--capacity",
        "1000000",
        "--json",
    ]


def test_negative_numbers_are_values_and_other_options_end_the_list() -> None:
    args = ["bench", "--capacity", "-5", "7", "--peak-factor", "2", "--scenario", "a", "b"]

    assert repeat_many_values(args) == [
        "bench",
        "--capacity",
        "-5",
        "--capacity",
        "7",
        "--peak-factor",
        "2",
        "--scenario",
        "a",
        "--scenario",
        "b",
    ]
