"""Proof that code refused an address before connecting: an audit hook (PEP 578)
that sees every `socket.connect` and name lookup the process makes.

Inside `watch_sockets()` each connect and getaddrinfo is recorded, and a connect
to an address outside loopback is stopped (PermissionError) before the packet
leaves, so a test of a refusal sends nothing to that address even on code that
fails to refuse it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Sockets:
    connects: list[str] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)


_watching: ContextVar[Sockets | None] = ContextVar("watching_sockets", default=None)
_installed = False


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event: str, args: tuple[object, ...]) -> None:
    seen = _watching.get()
    if seen is None:
        return
    if event == "socket.getaddrinfo":
        seen.lookups.append(str(args[0]))
    elif event == "socket.connect":
        address = args[1]
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        seen.connects.append(host)
        if not _loopback(host):
            raise PermissionError(f"test guard: no connection to {host} outside loopback")


@contextlib.contextmanager
def watch_sockets() -> Iterator[Sockets]:
    """Record (and keep to loopback) this context's sockets; asyncio tasks and
    threads started inside inherit it, others in the process are not watched."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)  # hooks cannot be removed: installed once, gated by the var
        _installed = True
    seen = Sockets()
    token = _watching.set(seen)
    try:
        yield seen
    finally:
        _watching.reset(token)
