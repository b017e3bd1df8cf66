"""The HTTP API's own models (problem bodies, the PDF link, the documented errors).

The documents the API shares with the service, the CLI and the workers (the
status document, the report request and its range rules, the kinds) are in
`reportflow.contract`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    """Every 4xx/5xx body: what happened and what to do."""

    detail: Any


def problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# Answers any authenticated route may give, documented once per router.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: problem("The body is not JSON"),
    401: problem("No or unknown bearer token"),
    422: problem("Invalid input: `detail` says what to change"),
    503: problem("Temporal is unavailable; retry after `Retry-After` seconds"),
}


class PdfLink(BaseModel):
    """A short-lived URL of the PDF that needs no Bearer header (S3 presigned, or signed
    by the API for a file store); ask again once `expires_at` has passed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "/reports/report-u0001-2026-08-30-2026-11-27/pdf/download"
                    "?key=report-u0001-2026-08-30-2026-11-27.pdf&expires=1795900000&sig=...",
                    "expires_at": "2026-11-28T12:05:00Z",
                }
            ]
        }
    )

    url: str
    expires_at: datetime
