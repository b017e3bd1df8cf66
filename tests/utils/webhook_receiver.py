"""A webhook receiver for tests: verifies each delivery's Standard Webhooks
signature and counts what it accepted, per path; it can be told to answer
some deliveries with an error first, the way a real receiver misbehaves."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from standardwebhooks import Webhook

from tests.utils.listener import serve_http


@dataclass
class Attempt:
    at: float
    status: int
    headers: dict[str, str]


@dataclass
class Accepted:
    event_id: str
    payload: dict[str, Any]


@dataclass
class Receiver:
    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    # Per path: (status, extra headers) to answer the next deliveries with.
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    accepted: dict[str, list[Accepted]] = field(default_factory=dict)
    bad_signatures: int = 0
    # Per path: hold the next request this many seconds before answering it.
    stalls: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *replies: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.script.setdefault(path, []).extend(replies)

    def tries(self, path: str) -> list[Attempt]:
        with self.lock:
            return list(self.attempts.get(path, []))

    def got(self, path: str) -> list[Accepted]:
        with self.lock:
            return list(self.accepted.get(path, []))


@contextlib.contextmanager
def serve_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                script = state.script.get(self.path, [])
                status, extra = script.pop(0) if script else (200, {})
                state.attempts.setdefault(self.path, []).append(
                    Attempt(time.monotonic(), status, headers)
                )
                secret = state.secrets.get(self.path)
                stall = state.stalls.pop(self.path, 0.0)
            if stall:
                time.sleep(stall)  # a thread of its own: the server keeps serving
            if status == 200:
                try:
                    assert secret is not None, f"no secret for {self.path}"
                    payload = Webhook(secret).verify(body, headers)
                except Exception:
                    with state.lock:
                        state.bad_signatures += 1
                    status = 401
                else:
                    with state.lock:
                        state.accepted.setdefault(self.path, []).append(
                            Accepted(headers["webhook-id"], payload)
                        )
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"status": status}).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serve_http(Handler) as port:
        state.port = port
        yield state
