"""`python -m reportflow.cli`: the `reportflow` command."""

from reportflow.cli import run

run()
