"""The S3 report store against an S3-protocol server running on this machine
(moto's ThreadedMotoServer): objects under the URL's prefix, presigned downloads
checked against SigV4 and fetched over HTTP, and a report end to end whose PDF
lives only in the bucket and downloads through the API's 303 with no token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema
from reportflow.core.store import FileStore, S3Store, open_store
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import Bearer, last_90_days, pdf_text, wait_status
from tests.utils.s3 import S3Server, aws_env, s3_server, verify_presigned
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api

PDF = b"%PDF-1.4 a tiny stand-in"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server, aws_env(server):
        yield server


async def test_put_get_delete_under_the_url_prefix(s3: S3Server) -> None:
    bucket = s3.create_bucket()
    store = open_store(f"s3://{bucket}/team/reports")
    assert isinstance(store, S3Store)

    await store.put("r1.pdf", PDF)
    assert s3.keys(bucket) == ["team/reports/r1.pdf"]
    assert await store.get("r1.pdf") == PDF
    assert await store.exists("r1.pdf")
    await store.put("r1.pdf", PDF + b" again")  # a retried render replaces it
    assert await store.get("r1.pdf") == PDF + b" again"

    assert await store.get("missing.pdf") is None
    assert not await store.exists("missing.pdf")
    assert await store.delete("r1.pdf") is True
    assert await store.delete("r1.pdf") is False
    assert s3.keys(bucket) == []


async def test_a_streamed_put_writes_one_object_of_every_chunk(
    s3: S3Server, tmp_path: Path
) -> None:
    """A kind's export: chunks in, one object out (multipart past a part's size), on
    both stores, with its format's content type."""
    chunks = [bytes([65 + i % 26]) * 1_000_000 for i in range(12)]  # 12 MB: several parts

    async def export() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    bucket = s3.create_bucket()
    for store in (open_store(f"s3://{bucket}/p"), FileStore(tmp_path)):
        size = await store.put_stream("report-x/run.csv", export())
        assert size == 12_000_000
        assert await store.get("report-x/run.csv") == b"".join(chunks)
    url = await open_store(f"s3://{bucket}/p").signed_url("report-x/run.csv", timedelta(seconds=60))
    assert url is not None
    async with httpx.AsyncClient() as anonymous:
        response = await anonymous.get(url)
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["content-disposition"] == 'attachment; filename="report-x.csv"'
    assert list(tmp_path.rglob(".tmp-*")) == []


async def test_presigned_url_downloads_without_credentials(s3: S3Server) -> None:
    bucket = s3.create_bucket()
    store = open_store(f"s3://{bucket}/p")
    await store.put("report-x.pdf", PDF)

    url = await store.signed_url("report-x.pdf", timedelta(seconds=60))
    assert url is not None and url.startswith(f"{s3.endpoint}/{bucket}/p/report-x.pdf?")
    verify_presigned(url)
    with pytest.raises(AssertionError, match="expired"):
        verify_presigned(url, now=datetime.now(UTC) + timedelta(seconds=61))
    with pytest.raises(AssertionError, match="signature"):
        verify_presigned(url.replace("report-x.pdf", "report-y.pdf"))

    async with httpx.AsyncClient() as anonymous:
        response = await anonymous.get(url)
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'attachment; filename="report-x.pdf"'


async def test_public_endpoint_signs_for_the_browsers_host(s3: S3Server) -> None:
    """Hosts reach the store at one address, browsers at another (compose's minio)."""
    bucket = s3.create_bucket()
    public = s3.endpoint.replace("127.0.0.1", "localhost")
    store = open_store(f"s3://{bucket}", public_endpoint=public)
    await store.put("r.pdf", PDF)
    url = await store.signed_url("r.pdf", timedelta(seconds=60))
    assert url is not None and url.startswith(f"{public}/{bucket}/r.pdf?")
    verify_presigned(url)
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(url)).content == PDF


def test_store_url_and_keys_are_checked(tmp_path: Path) -> None:
    for url in (str(tmp_path), f"file://{tmp_path}"):
        store = open_store(url)
        assert isinstance(store, FileStore) and store.root == tmp_path
    with pytest.raises(ValueError, match=r"s3://bucket/prefix"):
        open_store("gs://bucket/x")
    with pytest.raises(ValueError, match="invalid report store key"):
        FileStore(tmp_path)._path("../etc/passwd")


async def test_report_pdf_lives_in_s3_and_downloads_through_the_303(
    s3: S3Server, tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    bucket = s3.create_bucket()
    settings = make_settings(tmp_path, smtp.port, report_store_url=f"s3://{bucket}/pdfs")
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    user_id = await create_user(engine, transactions=sample_transactions(start, 90, 7))
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()

    async with (
        in_process_worker(settings, temporal_client),
        serve_api(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        created = await http.post("/reports", headers=user.headers)
        assert created.status_code == 202, created.text
        report_id = created.json()["report_id"]
        done = await wait_status(http, user, report_id, {"completed", "failed", "cancelled"})
        assert done["status"] == "completed", done

        redirect = await http.get(f"/reports/{report_id}/pdf", headers=user.headers)
        assert redirect.status_code == 303, redirect.text
        location = redirect.headers["Location"]
        key = f"{report_id}/{done['run_id']}.pdf"
        assert location.startswith(f"{s3.endpoint}/{bucket}/pdfs/{key}?")
        verify_presigned(location)
        link = (await http.get(f"/reports/{report_id}/pdf/link", headers=user.headers)).json()
        assert link["url"].startswith(f"{s3.endpoint}/{bucket}/pdfs/{key}?")

    # The API is gone: the link alone serves the PDF, straight from the bucket.
    async with httpx.AsyncClient() as anonymous:
        pdf = await anonymous.get(location)
    assert pdf.status_code == 200
    assert "Test User" in pdf_text(pdf.content)
    assert s3.keys(bucket) == [f"pdfs/{key}"]
    message = await smtp.wait_for_message(f"{user_id}@example.com")
    assert [a.get_content() for a in message.iter_attachments()] == [pdf.content]
