"""The report store: where PDFs live so that only their keys travel through Temporal.

REPORT_STORE_URL is a directory (or a file:// URL) every API and worker host can
reach, such as a shared volume. Writes go to a temporary file and are renamed
into place, so a reader never sees half a PDF and a retried render just replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class ReportStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid report store key: {key!r}")
        return self.root / key

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

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

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
        """Remove every object last written before `cutoff` (and abandoned partial
        writes); returns how many reports were removed."""
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


def pdf_key(report_id: str, run_id: str) -> str:
    """One PDF per run: a regenerated report never overwrites, nor its cleanup
    removes, the PDF of the run before it."""
    return f"{report_id}/{run_id}.pdf"
