"""An S3-protocol server on this machine for tests: moto's ThreadedMotoServer
(PyPI `moto[server]`), which speaks the S3 REST API over HTTP on a local port.

moto accepts any credentials and does not check query-string signatures, so
`verify_presigned` checks a presigned URL against AWS Signature Version 4 itself:
signed for this host and key with these credentials, and not expired.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
from moto.server import ThreadedMotoServer

from reportflow_dev.testing import free_port

ACCESS_KEY = "reportflow-test"
SECRET_KEY = "reportflow-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS_* variables that point obstore (and boto3) here."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def create_bucket(self) -> str:
        name = f"reports-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@contextlib.contextmanager
def aws_env(server: S3Server) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def verify_presigned(url: str, *, now: datetime | None = None) -> None:
    """AssertionError unless `url` is a valid, unexpired SigV4 GET presigned with
    ACCESS_KEY/SECRET_KEY for the host and path it names."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256", query
    access_key, day, region, service, terminator = query["X-Amz-Credential"].split("/")
    assert (access_key, region, service, terminator) == (ACCESS_KEY, REGION, "s3", "aws4_request")
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires_at = signed_at + timedelta(seconds=int(query["X-Amz-Expires"]))
    assert (now or datetime.now(UTC)) < expires_at, f"expired at {expires_at}"
    assert query["X-Amz-SignedHeaders"] == "host", query
    canonical_query = "&".join(
        f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items()) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = f"{day}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            query["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{SECRET_KEY}".encode(), day)
    for part in (region, service, terminator):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, query["X-Amz-Signature"]), "signature does not match"
