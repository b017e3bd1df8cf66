"""The one retry-policy builder gives the policies the workflows wrote by hand."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from reportflow.models import NON_RETRYABLE_ERRORS, Backoff
from reportflow.workflows.generate_report import retry_policy
from reportflow.workflows.policies import backoff_retry, retry


def test_the_defaults_are_the_sdks() -> None:
    assert retry() == RetryPolicy()


def test_a_fixed_schedule() -> None:
    assert retry(attempts=5, first=timedelta(seconds=10), longest=timedelta(minutes=5)) == (
        RetryPolicy(
            initial_interval=timedelta(seconds=10),
            maximum_interval=timedelta(minutes=5),
            maximum_attempts=5,
        )
    )


def test_a_backoff_from_the_settings() -> None:
    backoff = Backoff(initial_seconds=3, coefficient=1.5, maximum_seconds=40, maximum_attempts=7)
    assert backoff_retry(backoff, never=["Refused"]) == RetryPolicy(
        initial_interval=timedelta(seconds=3),
        backoff_coefficient=1.5,
        maximum_interval=timedelta(seconds=40),
        maximum_attempts=7,
        non_retryable_error_types=["Refused"],
    )
    # generate_report.py's own builder (its helper may switch to this one).
    assert backoff_retry(backoff, NON_RETRYABLE_ERRORS) == retry_policy(backoff)
