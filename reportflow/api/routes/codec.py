"""`/codec/encode`, `/codec/decode`: Temporal's remote codec protocol, for operators.

The Temporal Web UI and `temporal --codec-endpoint …/codec` send the payloads
they hold (`{"payloads": [{"metadata": {…}, "data": "…"}]}`, base64 bytes) and
show what comes back. Admin tokens only; browsers only from the Web UI's origin
(TEMPORAL_UI_URL), which may send `Content-Type`, `X-Namespace` and `Authorization`.

Under `reportflow dev` alone, the embedded Web UI (which has no way to send a
token) may call without one: the dev server binds to loopback and the same
person holds the keys in var/.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from pydantic import BaseModel, Field, ValidationError
from temporalio.api.common.v1 import Payloads

from reportflow.api.deps import EngineDep, SettingsDep, authenticate, bearer
from reportflow.api.schemas import problem
from reportflow.core.codec import EncryptionCodec, KeyringError

router = APIRouter(prefix="/codec", tags=["codec"])

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
MAX_BODY_BYTES = 4 * 1024 * 1024  # a batch of payloads, each under Temporal's 2 MB


class PayloadDoc(BaseModel):
    metadata: dict[str, str] = Field(default_factory=dict, description="base64 values")
    data: str = Field("", description="base64 bytes")


class PayloadsDoc(BaseModel):
    payloads: list[PayloadDoc] = Field(default_factory=list)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "MQ=="}]}
            ]
        }
    }


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cors(request: Request, origin: str | None) -> dict[str, str]:
    """CORS headers for the Web UI's origin; 403 for any other browser origin."""
    if origin is None:
        return {}  # not a browser: the CLI, curl
    allowed = origin_of(request.app.state.settings.temporal_ui_url)
    if origin != allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"origin {origin} may not call the codec; only the Temporal Web UI at "
            f"{allowed} may (set TEMPORAL_UI_URL to the UI's address)",
        )
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@router.options("/{operation}", status_code=status.HTTP_204_NO_CONTENT, include_in_schema=False)
async def preflight(operation: Literal["encode", "decode"], request: Request) -> Response:
    """The browser's CORS preflight."""
    headers = _cors(request, request.headers.get("origin"))
    if not headers:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="a preflight needs an Origin")
    return Response(
        status_code=status.HTTP_204_NO_CONTENT,
        headers={
            **headers,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


async def _body(request: Request) -> PayloadsDoc:
    """The payloads document, read only now (after the caller was checked), at most
    MAX_BODY_BYTES of it."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"the request body is over {MAX_BODY_BYTES} bytes; send fewer payloads",
            )
    try:
        return PayloadsDoc.model_validate_json(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
        )
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f'send {{"payloads": [{{"metadata": {{…}}, "data": "…"}}]}}: {problems}',
        ) from None


_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PayloadsDoc"}}},
    }
}


@router.post(
    "/{operation}",
    response_model=PayloadsDoc,
    openapi_extra=_BODY_SCHEMA,  # read by hand (`_body`), after the token
    responses={
        400: problem("Payloads that are not valid, or do not decrypt with the keys held"),
        401: problem("No or unknown token"),
        403: problem("Not an admin token, or a browser origin other than the Web UI's"),
        413: problem("A body over 4 MiB"),
        422: problem("Not a payloads document"),
    },
)
async def transcode(
    operation: Literal["encode", "decode"],
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Encrypt (`encode`) or decrypt (`decode`) payloads with the service's keyring.
    The token is checked before a byte of the body is read."""
    origin = request.headers.get("origin")
    cors = _cors(request, origin)
    dev_ui = request.app.state.dev_codec_origin
    if not (credentials is None and dev_ui is not None and origin == dev_ui):
        caller = await authenticate(engine, credentials, request.app.state.token_cache)
        if not caller.is_admin:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="the codec needs an admin token (`reportflow token create --admin`)",
            )
    body = await _body(request)
    try:
        payloads = json_format.ParseDict(body.model_dump(), Payloads())
    except (json_format.ParseError, ValueError, TypeError) as err:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"not a payloads document (metadata values and data are base64): {err}",
        ) from None
    codec: EncryptionCodec = request.app.state.codec
    try:
        if operation == "encode":
            result = await codec.encode(payloads.payloads)
        else:
            result = await codec.decode(payloads.payloads)
    except KeyringError as err:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(err)) from None
    return JSONResponse(
        json_format.MessageToDict(Payloads(payloads=result)) or {"payloads": []}, headers=cors
    )
