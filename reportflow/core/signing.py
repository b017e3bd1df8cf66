"""The HMAC of a download link a file store cannot presign itself.

The API serves `/reports/{id}/pdf/download` (and `/file/download`) for a link
signed with SECRET_KEY over the report, the key and the expiry; the email step
of a worker signs the same links, so the signing lives here, below both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def signature(secret: str, report_id: str, key: str, expires: int) -> str:
    message = f"reportflow-download\n{report_id}\n{key}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(secret: str, report_id: str, key: str, expires: int, sig: str) -> bool:
    """True while the link is unexpired and was signed for this report and key."""
    if expires < time.time():
        return False
    return hmac.compare_digest(signature(secret, report_id, key, expires).encode(), sig.encode())
