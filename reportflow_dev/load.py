"""What the bench needs to stand in for many remote clients on the machine it measures.

- `RawHttp`: one keep-alive HTTP/1.1 connection in a few dozen lines. A hundred
  pollers through httpx cost the bench about as much CPU as the API spends
  answering them (~1 ms a request), and on a 2-core machine that CPU is taken
  from the renderer being measured. Real pollers run on other machines; this
  client keeps their cost off the figures.
- `sse_events`: one Server-Sent Events stream read to its end, as cheaply.
- `CpuGroup`: the production shape on one host. API and worker run in separate
  containers (or hosts) in production, each with its CPU share; here the worker
  and its Chromium go into a control group of lower weight, so the API is not
  queued behind renderers (Chromium, run as root, raises its own priority to
  nice -8, which `nice` cannot undo). Where no control group can be made (not
  root, no writable cgroup file system) the bench says so and runs without.
- `CoreSplit`: the production shape taken further, as on separate hosts: the
  worker and its Chromium on cores of their own (the upper half), the Temporal
  server, the API and the clients on the rest. What a worker host can do next
  to raw Chromium on the same cores is then measured without the co-located
  Temporal dev server's CPU, which in production is a cluster's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class RawHttp:
    """One HTTP/1.1 connection, requests one after another, reconnecting when the
    server closes it. Only what the API answers: Content-Length bodies."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Reply:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        message = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        for attempt in (1, 2):  # a kept-alive connection the server has since closed
            try:
                return await self._exchange(message)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, message: bytes) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(message)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await self._reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(int(status_line.split(" ", 2)[1]), headers, body)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def sse_events(base_url: str, path: str, headers: dict[str, str]) -> int:
    """Read one Server-Sent Events stream to its end; the number of `status` events,
    or an error if it ended before a final status."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = await reader.read()  # the server closes after the final status
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not received.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {received[:80]!r}")
    if not any(f'"status":"{s}"'.encode() in received for s in FINAL):
        raise RuntimeError(f"{path}: the stream ended before a final status")
    return received.count(b"event: status\n")


FINAL = ("completed", "failed", "cancelled")

_V1_CPU = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class CpuGroup:
    """A control group whose processes get `share` of the CPU weight a process
    outside it gets (cgroup v1 `cpu.shares`, or v2 `cpu.weight`)."""

    def __init__(self, name: str, share: float) -> None:
        self.share = share
        self.path: Path | None = None
        candidates = [
            (_V1_CPU / name, "cpu.shares", int(1024 * share)),
            (_V2 / name, "cpu.weight", max(1, int(100 * share))),
        ]
        for path, knob, value in candidates:
            if not (path.parent / "cgroup.procs").exists() or not os.access(path.parent, os.W_OK):
                continue
            try:
                path.mkdir(exist_ok=True)
                (path / knob).write_text(str(value))
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            self.path = path
            self.knob = f"{knob}={value}"
            break

    @property
    def description(self) -> str:
        if self.path is None:
            return "worker at the API's CPU weight (no writable cgroup)"
        return f"worker at {self.share:.0%} of the API's CPU weight ({self.knob})"

    def add(self, pids: Iterable[int]) -> None:
        if self.path is None:
            return
        for pid in pids:
            with contextlib.suppress(OSError):  # a process that has just exited
                (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Back to the parent group (a group with processes cannot be removed)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.path.parent / "cgroup.procs").write_text(pid)
            self.path.rmdir()


def _pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Every thread of these processes onto `cpus` (children they start inherit it)."""
    for pid in pids:
        with contextlib.suppress(OSError):  # a process or thread that has just exited
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


class CoreSplit:
    """The worker's cores (the upper half) and everyone else's; `possible` on 2+ cores."""

    def __init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        half = len(cpus) // 2
        self.all = set(cpus)
        self.others, self.worker = set(cpus[:half]), set(cpus[half:])

    @property
    def possible(self) -> bool:
        return bool(self.others)

    @property
    def description(self) -> str:
        def cores(cpus: set[int]) -> str:
            return ("core " if len(cpus) == 1 else "cores ") + ",".join(map(str, sorted(cpus)))

        return f"worker on {cores(self.worker)}, Temporal, API and clients on {cores(self.others)}"

    @contextlib.contextmanager
    def on_worker_cores(self) -> Iterator[None]:
        """This thread (so processes it starts: a raw Chromium) on the worker's cores."""
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.worker)
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def apply(self, worker: Iterable[int], others: Iterable[int]) -> None:
        _pin(worker, self.worker)
        _pin(others, self.others)

    def undo(self, pids: Iterable[int]) -> None:
        _pin(pids, self.all)
