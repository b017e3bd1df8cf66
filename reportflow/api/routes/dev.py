"""`/dev/outbox`: what the built-in SMTP sink received, for `reportflow dev` only."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse

from reportflow.api.pages import templates
from reportflow.smtp_sink import list_outbox

router = APIRouter(prefix="/dev", tags=["dev"], include_in_schema=False)


def _outbox(request: Request) -> Path:
    outbox: Path | None = request.app.state.dev_outbox
    if outbox is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no SMTP sink in this setup")
    return outbox


@router.get("/outbox", response_class=HTMLResponse)
async def outbox_page(request: Request) -> Response:
    """The sink's messages, newest first, with links to their PDFs."""
    messages = list_outbox(_outbox(request))
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(messages)
    return templates.TemplateResponse(request, "outbox.html.j2", {"messages": messages})


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
                headers={"Content-Disposition": f'inline; filename="{part.get_filename()}"'},
            )
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="that message has no attachment")
