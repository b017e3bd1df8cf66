"""A TCP proxy on loopback that can hold traffic, the way a network partition does.

A partition is not a refused connection: the peer's packets stop arriving, and
nothing says so. Each side's connection stays open, its writes succeed (into
buffers), its reads wait, and only its own timeouts or keepalives can tell it
something is wrong. `hold()` does that: the proxy stops reading from every
socket it owns (so the bytes stay in the kernel's buffers, not in the proxy),
accepts new connections but opens nothing upstream for them, and `release()`
lets everything flow again, in order, as a healed network would deliver the
segments TCP kept retransmitting.

One detail keeps the model honest: a side that resets its connection during a
hold (an abort, SO_LINGER 0) discards what it had sent but what had not crossed
the partition yet. Linux still lets the proxy read bytes it received before the
reset, so `release()` checks each socket's pending error first and drops such a
connection whole instead of delivering them. A side that closed gracefully
(FIN) has its bytes delivered on release, as its kernel would keep retransmitting.

`drop()` is the other fault, for comparison: every open connection is reset at
once (the peer learns at its next read or write); new ones are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads is written to its peer."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.closed = False
        # The peer's write buffer is full: this side stops reading until it drains.
        self.backpressured = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.peer is None:  # a client whose upstream is not open yet: read nothing
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.link.proxy.forwarded += len(data)
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        assert self.peer is not None and self.peer.transport is not None
        if self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        if self.peer.eof:
            self.link.close()
        return True  # half-closed: the other direction may still carry bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None:
            self.link.close()
        else:
            self.link.abort()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.backpressured = True
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.backpressured = False
            if not self.link.proxy.held:
                self.peer.transport.resume_reading()

    def reset_by_peer(self) -> bool:
        """Whether the other end reset this socket (an error is pending on it)."""
        if self.transport is None:
            return False
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or transport.is_reading():
            return
        if not self.backpressured:
            transport.resume_reading()


@dataclass(eq=False)
class _Link:
    """A client's connection and the one the proxy opened upstream for it."""

    proxy: HoldingProxy
    client: _Side = field(init=False)
    upstream: _Side | None = None
    done: bool = False

    def __post_init__(self) -> None:
        self.client = _Side(self)

    def sides(self) -> list[_Side]:
        return [self.client] + ([self.upstream] if self.upstream else [])

    def pause(self) -> None:
        for side in self.sides():
            side.pause()

    def resume(self) -> None:
        if self.upstream is None:
            return  # still connecting: `_connect_upstream` resumes it
        if any(side.reset_by_peer() for side in self.sides()):
            # Reset during the hold: what it had sent never crossed; neither may it now.
            self.abort()
            return
        for side in self.sides():
            side.resume()

    def close(self) -> None:
        self._end(abort=False)

    def abort(self) -> None:
        self._end(abort=True)

    def _end(self, *, abort: bool) -> None:
        if self.done:
            return
        self.done = True
        self.proxy._links.discard(self)
        for side in self.sides():
            if side.transport is not None and not side.transport.is_closing():
                if abort:
                    side.transport.abort()
                else:
                    side.transport.close()


class HoldingProxy:
    """Forwards 127.0.0.1:`port` to `target_host:target_port`; can hold, release, drop.

    Use as `async with HoldingProxy(host, port) as proxy:`; `proxy.address` is what
    the client is pointed at instead of the target.
    """

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.held = False
        self.forwarded = 0  # bytes moved, both directions, since start
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._connecting: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Client connections open now (held ones included)."""
        return len(self._links)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        for link in list(self._links):
            link.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> HoldingProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def hold(self) -> None:
        """Stop moving bytes both ways on every connection; keep them all open."""
        self.held = True
        self._flowing.clear()
        for link in list(self._links):
            link.pause()
        log.info("proxy to %s:%s holds %d connections", *self.target, len(self._links))

    def release(self) -> None:
        """Let the held bytes, and everything after them, through again."""
        self.held = False
        self._flowing.set()
        for link in list(self._links):
            link.resume()

    def drop(self) -> None:
        """Reset every open connection now (a cut cable, a restarted middlebox)."""
        for link in list(self._links):
            link.abort()

    def _accept(self) -> _Side:
        link = _Link(self)
        self._links.add(link)
        task = asyncio.get_running_loop().create_task(self._connect_upstream(link))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return link.client

    async def _connect_upstream(self, link: _Link) -> None:
        # Nothing is read from the client until its upstream exists (and flows).
        await self._flowing.wait()
        if link.done or link.client.closed:
            link.abort()
            return
        upstream = _Side(link)
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, *self.target)
        except OSError:
            link.abort()
            return
        upstream.peer, link.client.peer = link.client, upstream
        link.upstream = upstream
        if link.done:
            link.abort()
        elif self.held:  # a hold began while connecting
            link.pause()
        else:
            link.resume()


@contextlib.asynccontextmanager
async def held(proxy: HoldingProxy) -> AsyncIterator[None]:
    """Hold `proxy` for the block, release it at the end whatever happens."""
    proxy.hold()
    try:
        yield
    finally:
        proxy.release()
