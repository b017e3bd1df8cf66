"""Short-lived download links, so the PDF never streams through an API that holds
it for an S3 store, and a plain link (page, email) works without a Bearer header.

An S3 store presigns its own URL. A file store cannot, so the API signs a link
to its own `/reports/{id}/pdf/download` with SECRET_KEY (HMAC-SHA256 over the
report, the key and the expiry); any API replica with the same secret serves it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from reportflow.core.signing import signature, verify
from reportflow.core.store import ReportStore

__all__ = ["DownloadLink", "download_link", "signature", "verify"]


@dataclass
class DownloadLink:
    url: str
    expires_at: datetime


async def download_link(
    store: ReportStore,
    *,
    secret: str,
    report_id: str,
    key: str,
    lifetime_seconds: int,
    route: str = "pdf",
) -> DownloadLink:
    """`route`: `pdf` or `file`, the download route a file store's link points at."""
    expires = int(time.time()) + lifetime_seconds
    url = await store.signed_url(key, timedelta(seconds=lifetime_seconds))
    if url is None:
        query = urlencode(
            {"key": key, "expires": expires, "sig": signature(secret, report_id, key, expires)}
        )
        url = f"/reports/{report_id}/{route}/download?{query}"
    return DownloadLink(url=url, expires_at=datetime.fromtimestamp(expires, UTC))
