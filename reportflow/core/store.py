"""The report store: where PDFs live so that only their keys travel through Temporal.

REPORT_STORE_URL names one store that every API and worker host reaches:

- a directory or `file://` URL (the embedded default `var/reports`; on several
  hosts a shared volume such as NFS or EFS): `FileStore`;
- `s3://bucket/prefix` for S3, MinIO, R2 or GCS-interop: `S3Store`, through
  obstore, with endpoint, region and credentials from the standard `AWS_*`
  variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...).

Both keep one PDF per run under `<report_id>/<run_id>.pdf`, replace an object
whole (a reader never sees half a PDF; a retried render just writes it again),
remove what is older than the retention (`delete_older_than`), and never stream
a download through the API: an S3 store signs a short-lived URL itself, a file
store answers None and the API signs a URL to its own download route.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store as ObstoreS3

from reportflow.models import CONTENT_TYPES

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid report store key: {key!r}")
    return key


class ReportStore(Protocol):
    """What the activities and the API need of a store."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """Write the chunks as one object, holding one chunk at a time; its size."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool: ...

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Remove every object last written before `cutoff`; how many were removed."""
        ...

    async def signed_url(self, key: str, expires_in: timedelta) -> str | None:
        """A URL that fetches the object with no other credential, or None when
        the store cannot sign (the API then signs a link to itself)."""
        ...


class FileStore:
    """A directory; writes go to a temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    await asyncio.to_thread(f.write, chunk)
                    size += len(chunk)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            # Not in a thread: a cancelled write must not leave its partial file behind.
            Path(tmp).unlink(missing_ok=True)  # noqa: ASYNC240
            raise
        return size

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def local_path(self, key: str) -> Path | None:
        """The file behind a key, for streaming responses; None if absent."""
        path = self._path(key)
        return path if path.is_file() else None

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, self._path(key))

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if path.parent != self.root:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the report's folder, once its last run is gone
        return True

    async def delete_older_than(self, cutoff: datetime) -> int:
        """Also removes abandoned partial writes (not counted)."""
        return await asyncio.to_thread(self._delete_older_than, cutoff.timestamp())

    def _delete_older_than(self, cutoff: float) -> int:
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in list(self.root.rglob("*")):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    partial = path.name.startswith(".tmp-")
                    removed += self._delete(path) and not partial
        return removed

    async def signed_url(self, key: str, expires_in: timedelta) -> str | None:
        return None


class S3Store:
    """An S3 bucket (or prefix of one) through obstore.

    `public_endpoint` is the address browsers use when it differs from the one
    the hosts use (compose: `http://minio:9000` inside, `http://localhost:9000`
    outside): a presigned URL signs its host, so it is signed for that one.
    """

    def __init__(self, url: str, *, public_endpoint: str | None = None) -> None:
        self.url = url
        self._store = _s3(url, os.environ.get("AWS_ENDPOINT_URL") or None)
        self._signer = _s3(url, public_endpoint) if public_endpoint else self._store

    async def put(self, key: str, data: bytes) -> None:
        name = _download_name(check_key(key))
        await obstore.put_async(
            self._store,
            key,
            data,
            attributes={
                "Content-Type": _content_type(name),
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        """A multipart upload, one part at a time (obstore buffers a part, not the object)."""
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        name = _download_name(check_key(key))
        await obstore.put_async(
            self._store,
            key,
            counted(),
            attributes={
                "Content-Type": _content_type(name),
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )
        return size

    async def get(self, key: str) -> bytes | None:
        try:
            result = await obstore.get_async(self._store, check_key(key))
        except (NotFoundError, FileNotFoundError):
            return None
        return bytes(await result.bytes_async())

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self._store, check_key(key))
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    async def delete(self, key: str) -> bool:
        # S3 deletes say nothing of whether the object was there: ask first.
        existed = await self.exists(key)
        if existed:
            await obstore.delete_async(self._store, key)
        return existed

    async def delete_older_than(self, cutoff: datetime) -> int:
        removed = 0
        async for chunk in obstore.list(self._store):
            old = [meta["path"] for meta in chunk if meta["last_modified"] < cutoff]
            if old:
                await obstore.delete_async(self._store, old)
                removed += len(old)
        return removed

    async def signed_url(self, key: str, expires_in: timedelta) -> str | None:
        return await obstore.sign_async(self._signer, "GET", check_key(key), expires_in)


def _s3(url: str, endpoint: str | None) -> ObstoreS3:
    """obstore reads AWS_* itself; plain-HTTP endpoints (MinIO, test servers) are allowed
    explicitly, since object_store refuses http:// unless told."""
    if endpoint is None:
        return ObstoreS3.from_url(url)
    return ObstoreS3.from_url(
        url,
        endpoint=endpoint,
        client_options={"allow_http": urlsplit(endpoint).scheme == "http"},
    )


def open_store(url: str, *, public_endpoint: str | None = None) -> ReportStore:
    """The store REPORT_STORE_URL names (see the module docstring)."""
    scheme = urlsplit(url).scheme
    if scheme in {"s3", "s3a"}:
        return S3Store(url, public_endpoint=public_endpoint)
    if scheme in {"", "file"}:
        return FileStore(Path(url.removeprefix("file://")))
    raise ValueError(
        f"REPORT_STORE_URL={url!r}: use a directory, a file:// URL or s3://bucket/prefix"
    )


def pdf_key(report_id: str, run_id: str) -> str:
    """One PDF per run: a regenerated report never overwrites, nor its cleanup
    removes, the PDF of the run before it."""
    return f"{report_id}/{run_id}.pdf"


def file_key(report_id: str, run_id: str, extension: str) -> str:
    """A kind's file, one per run like the PDF (`pdf_key` is this with "pdf")."""
    return f"{report_id}/{run_id}.{extension}"


def _content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rpartition(".")[2], "application/octet-stream")


def _download_name(key: str) -> str:
    """`<report_id>/<run_id>.<ext>` downloads as `<report_id>.<ext>`."""
    folder, _, name = key.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    return f"{folder.rpartition('/')[2]}.{extension}" if folder and dot and stem else name
