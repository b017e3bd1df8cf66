"""Headers every response carries, so nothing is sniffed, framed or leaks its URL.

The web page adds its own strict Content-Security-Policy (routes/pages.py);
`/docs` keeps FastAPI's, which loads Swagger UI from a CDN.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Lower-cased and encoded once: this runs on every response, status polls included.
_ENCODED = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _ENCODED if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
