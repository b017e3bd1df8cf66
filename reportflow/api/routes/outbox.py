"""`/dev/outbox`: what the built-in SMTP sink received, for `reportflow dev` only."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse

from reportflow.api.templating import templates
from reportflow.smtp_sink import list_outbox

router = APIRouter(prefix="/dev", tags=["dev"], include_in_schema=False)


OUTBOX_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _outbox(request: Request) -> Path:
    outbox: Path | None = request.app.state.dev_outbox
    # Even under `reportflow dev --public`, the sink is for this machine only.
    if outbox is None or request.client is None or request.client.host not in LOOPBACK:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no SMTP sink in this setup")
    return outbox


def _safe(filename: str | None) -> str:
    name = "".join(c for c in (filename or "attachment") if c.isalnum() or c in "._-")
    return name or "attachment"


@router.get("/outbox", response_class=HTMLResponse)
async def outbox_page(request: Request) -> Response:
    """The sink's messages, newest first, with links to their PDFs."""
    messages = list_outbox(_outbox(request))
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(messages)
    page = templates.TemplateResponse(request, "outbox.html.j2", {"messages": messages})
    # Subjects and names are untrusted text: no script may run here.
    page.headers["Content-Security-Policy"] = OUTBOX_CSP
    return page


@router.get("/outbox/{name}/attachment", response_class=Response)
async def outbox_attachment(name: str, request: Request) -> Response:
    """The PDF attached to one message."""
    path = _outbox(request) / Path(name).name
    if not name.endswith(".eml") or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such message in the outbox")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return Response(
                payload,
                media_type=part.get_content_type(),
                # Download, never render: attachments are untrusted bytes.
                headers={
                    "Content-Disposition": f'attachment; filename="{_safe(part.get_filename())}"',
                    "Content-Security-Policy": "default-src 'none'; sandbox",
                },
            )
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="that message has no attachment")
