"""A SELECT streamed as CSV in chunks, as `csv.writer(lineterminator="\\r\\n")` writes it.

The statement's columns must already be the cells (formatted in SQL), so no Python
runs per row: on PostgreSQL the server writes the CSV itself (`COPY (...) TO
STDOUT`); on a SQLite file one thread reads the stdlib driver's rows and `writerows`
writes them a cursor batch at a time in C, handing chunks to the event loop. A
Python loop per row ran the transactions-csv export at a tenth of the database's
own dump (P8); aiosqlite's thread and SQLAlchemy's rows at 0.45 of it.
Memory holds a few chunks and cursor batches whatever the row count.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.ext.asyncio import AsyncConnection

from reportflow.core.db import sqlite_twin

# A chunk handed to the store at a time: memory stays flat whatever the row count.
CSV_CHUNK_BYTES = 64 * 1024
# Rows a cursor batch holds (about 60 bytes each in the file).
CSV_BATCH_ROWS = 5000
# Chunks SQLite's thread may write ahead of the store.
CSV_CHUNKS_AHEAD = 4
# A server that sends nothing for this long fails the step, as a cursor's fetch did
# under the engine's `command_timeout`, which would otherwise bound the whole COPY and
# cut a large export short: the step's own deadline does that.
COPY_STALL_SECONDS = 30.0
COPY_SECONDS = 24 * 3600.0
# PostgreSQL quotes a value equal to COPY's NULL string (by default the empty one,
# which csv.writer leaves bare). The caller's columns are NOT NULL and must never
# equal this: see `stream_csv`.
COPY_NULL = "=NULL"


async def stream_csv(
    connection: AsyncConnection, statement: Select[Any], header: Sequence[str]
) -> AsyncGenerator[bytes, None]:
    """`header`, then the statement's rows. Its columns are NOT NULL and no value
    equals `COPY_NULL` (a text cell that may start with "=" is formula-guarded)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    if connection.dialect.name == "postgresql":
        copied = _copied(connection, statement, buffer.getvalue().encode())
        async with contextlib.aclosing(copied):  # closed with this one, not at collection
            async for chunk in copied:
                yield chunk
        return
    twin = sqlite_twin(connection.engine, read_only=True)
    if twin is None:  # an in-memory database: only this connection sees it
        result = await connection.stream(statement.execution_options(yield_per=CSV_BATCH_ROWS))
        async for rows in result.partitions():
            writer.writerows(rows)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        return
    try:
        async with contextlib.aclosing(_written_in_thread(twin, statement, buffer)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        twin.dispose()


async def _written_in_thread(
    twin: Engine, statement: Select[Any], buffer: io.StringIO
) -> AsyncGenerator[bytes, None]:
    """The statement's rows as CSV after what `buffer` holds, written by a thread of
    its own from the stdlib driver's rows (no SQLAlchemy row objects) a cursor batch
    at a time, at most CSV_CHUNKS_AHEAD chunks ahead. Closed early, the thread stops
    within one batch and is waited for; an error in the thread is raised here."""
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()
    room = threading.Semaphore(CSV_CHUNKS_AHEAD)
    stop = threading.Event()

    def hand(chunk: bytes) -> bool:
        """Queue `chunk` once there is room; False: the reader has gone."""
        while not room.acquire(timeout=0.05):
            if stop.is_set():
                return False
        loop.call_soon_threadsafe(received.put_nowait, chunk)
        return True

    def write() -> None:
        writer = csv.writer(buffer, lineterminator="\r\n")
        with twin.connect() as connection:
            cursor = connection.execute(statement).cursor  # nothing fetched from it yet
            while not stop.is_set() and (rows := cursor.fetchmany(CSV_BATCH_ROWS)):
                writer.writerows(rows)
                if buffer.tell() >= CSV_CHUNK_BYTES:
                    if not hand(buffer.getvalue().encode()):
                        return
                    buffer.seek(0)
                    buffer.truncate()
            hand(buffer.getvalue().encode())

    working = loop.run_in_executor(None, write)
    try:
        while True:
            if working.done() and received.empty():  # its last chunk is queued before
                working.result()
                return
            got = asyncio.ensure_future(received.get())
            either: list[asyncio.Future[Any]] = [got, working]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not got.done():  # the thread ended: look again (a chunk stays queued)
                got.cancel()
                continue
            room.release()
            yield got.result()
    finally:
        stop.set()
        await asyncio.wait([working])
        if not working.cancelled():
            working.exception()  # retrieved: the caller's own ending is what propagates


async def _copied(
    connection: AsyncConnection, statement: Select[Any], header: bytes
) -> AsyncGenerator[bytes, None]:
    """`header`, then PostgreSQL's own CSV of the statement, on the connection and in
    the (read-only) transaction the caller opened, with csv.writer's line ends."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    args = [compiled.params[name] for name in compiled.positiontup or ()]
    received: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)  # asyncpg waits when full
    copying = asyncio.ensure_future(
        driver.copy_from_query(
            str(compiled), *args, output=received.put, format="csv", null=COPY_NULL,
            timeout=COPY_SECONDS,
        )
    )  # fmt: skip
    quoted, pending, size = False, [header], len(header)
    got: asyncio.Future[bytes] | None = None
    try:
        while not (copying.done() and received.empty()):
            got = asyncio.ensure_future(received.get())
            done, _ = await asyncio.wait(
                {got, copying}, timeout=COPY_STALL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise TimeoutError(f"PostgreSQL sent no row for {COPY_STALL_SECONDS:g} s")
            if got not in done:  # the COPY ended: raise its error, else take what is left
                got.cancel()
                copying.result()
                continue
            data, quoted = crlf(got.result(), quoted)
            pending.append(data)
            size += len(data)
            if size >= CSV_CHUNK_BYTES:
                yield b"".join(pending)
                pending, size = [], 0
        copying.result()
        yield b"".join(pending)
    finally:  # stopped early (the step cancelled, the store failing): end the COPY too
        if got is not None:
            got.cancel()
        if not copying.done():
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await copying
            # A COPY cut short leaves its connection mid-protocol: the pool drops it.
            await connection.invalidate()


def crlf(data: bytes, quoted: bool) -> tuple[bytes, bool]:
    """PostgreSQL's CSV ends a row with "\\n", csv.writer with "\\r\\n" (both quote a
    value holding a quote, comma, "\\r" or "\\n", and double its quotes): every "\\n"
    outside quotes gets its "\\r". `quoted` says whether `data` starts inside a quoted
    value; the same for what follows it is returned."""
    if b'"' not in data:
        return (data if quoted else data.replace(b"\n", b"\r\n")), quoted
    parts = data.split(b'"')
    outside = 1 if quoted else 0
    parts[outside::2] = [part.replace(b"\n", b"\r\n") for part in parts[outside::2]]
    return b'"'.join(parts), quoted != (len(parts) % 2 == 0)
