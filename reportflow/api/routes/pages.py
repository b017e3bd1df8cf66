"""`GET /`: the web page. Generate a report, follow its progress, download it.

The page is one template plus a few static ES modules (`static/app.js` and the
modules it imports, no build step) that talk to the same JSON API as every other
client, with the user's bearer token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from reportflow.api.templating import templates

router = APIRouter(tags=["pages"])

# Scripts and styles from this origin only, no inline code: text that reaches
# the page from the API (merchant names never do; error messages may) cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="The web page",
    responses={200: {"content": {"text/html": {}}, "description": "The report page"}},
)
async def index(request: Request) -> Response:
    """The report page: sign in with a token, generate, watch progress, download."""
    response = templates.TemplateResponse(
        request, "index.html.j2", {"demo_token": request.app.state.demo_token}
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
