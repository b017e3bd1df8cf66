"""The one place a workflow's activity retry policy is built.

Every workflow asks here instead of writing `RetryPolicy(...)` by hand: `retry`
for a fixed schedule, `backoff_retry` for one from the settings (`Backoff`, which
the starter puts in the workflow's input). generate_report.py's own
`retry_policy(backoff)` is the same as `backoff_retry(backoff, NON_RETRYABLE_ERRORS)`.
Pure: it runs inside the workflow sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio.common import RetryPolicy

from reportflow.models import Backoff


def retry(
    *,
    attempts: int = 0,
    first: timedelta = timedelta(seconds=1),
    longest: timedelta | None = None,
    coefficient: float = 2.0,
    never: Sequence[str] = (),
) -> RetryPolicy:
    """`attempts` in all (0: until it succeeds or the activity's timeouts end it), the
    first wait `first`, each next one `coefficient` times longer up to `longest`;
    errors of a type in `never` are not retried. The defaults are the SDK's."""
    return RetryPolicy(
        initial_interval=first,
        backoff_coefficient=coefficient,
        maximum_interval=longest,
        maximum_attempts=attempts,
        non_retryable_error_types=list(never) or None,
    )


def backoff_retry(backoff: Backoff, never: Sequence[str] = ()) -> RetryPolicy:
    """The retry schedule a `Backoff` (from the settings) describes."""
    return retry(
        attempts=backoff.maximum_attempts,
        first=timedelta(seconds=backoff.initial_seconds),
        longest=timedelta(seconds=backoff.maximum_seconds),
        coefficient=backoff.coefficient,
        never=never,
    )
