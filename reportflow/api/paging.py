"""Page tokens handed to clients: Temporal's opaque token, signed.

Temporal answers a forged or garbled page token with an internal error (and
the SDK retries it for seconds), so tokens are HMAC-signed together with the
listing they belong to: anything not handed out for that listing is a 422 at
once and never reaches Temporal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from fastapi import HTTPException, status

BAD_PAGE_TOKEN = "page_token is not one this API handed out for this list; start again without it"


def _sign(raw: bytes, listing: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), listing.encode() + b"\0" + raw, hashlib.sha256).digest()[:16]


def encode_page_token(raw: bytes | None, listing: str, secret: str) -> str | None:
    if not raw:
        return None
    return base64.urlsafe_b64encode(_sign(raw, listing, secret) + raw).decode()


def decode_page_token(token: str | None, listing: str, secret: str) -> bytes | None:
    if not token:
        return None
    try:
        blob = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        blob = b""
    signature, raw = blob[:16], blob[16:]
    if not raw or not hmac.compare_digest(signature, _sign(raw, listing, secret)):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=BAD_PAGE_TOKEN)
    return raw
