"""A local HTTP listener that counts every connection: the renderer must never reach it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Listener:
    """A local HTTP server that records every connection and request it gets."""

    port: int
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def hits(self) -> int:
        with self.lock:
            return self.connections + len(self.paths)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def listener() -> Iterator[Listener]:
    with serve_listener() as state:
        yield state


@contextlib.contextmanager
def serve_listener() -> Iterator[Listener]:
    state = Listener(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"root:x:0:0:listener")

        do_POST = do_GET
        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    def connected() -> None:
        with state.lock:
            state.connections += 1

    with serve_http(Handler, on_connection=connected) as port:
        state.port = port
        yield state


@contextlib.contextmanager
def serve_http(
    handler: type[BaseHTTPRequestHandler], on_connection: Callable[[], None] = lambda: None
) -> Iterator[int]:
    """A threaded HTTP server on a free local port for the block; yields the port."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            on_connection()
            return True

    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def hostile_strings(listener: Listener) -> dict[str, str]:
    return {
        "img": f"<img src={listener.url('/img')}>",
        "iframe": "<iframe src=file:///etc/passwd>",
        "prefetch": f"<link rel=prefetch href={listener.url('/prefetch')}>",
        "refresh": f'<meta http-equiv=refresh content="0;url={listener.url("/refresh")}">',
        "script": f"<script>fetch('{listener.url('/js')}')</script>",
        "css": f"<style>body{{background:url({listener.url('/css')})}}</style>",
        "css_inline": f'<div style="background-image:url({listener.url("/css-inline")})">x</div>',
    }
