"""The `reportflow` command line itself: what argparse's `nargs="+"` options became."""

from __future__ import annotations

from reportflow.cli.app import repeat_many_values


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
