"""The user's webhook endpoints: register (secret shown once), list, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from reportflow.api.deps import CallerDep, EngineDep, SettingsDep, user_of
from reportflow.api.ratelimit import limit_creation
from reportflow.api.schemas import COMMON_ERRORS, problem
from reportflow.contract import CreatedWebhook, WebhookDocument, WebhookRequest
from reportflow.service import webhooks

router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    responses={**COMMON_ERRORS, 403: problem("An admin token has no webhooks of its own")},
)

NOT_FOUND = "no such webhook: check the ID, or list your webhooks with GET /webhooks"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedWebhook,
    responses={
        409: problem("The user holds MAX_WEBHOOKS_PER_USER endpoints already"),
        429: problem("Too many webhooks created; wait `Retry-After` seconds"),
    },
)
async def create(
    body: WebhookRequest,
    request: Request,
    response: Response,
    caller: CallerDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> CreatedWebhook:
    """Register an endpoint; keep `secret` (shown only now) to verify deliveries."""
    user_id = user_of(caller, "webhooks")
    try:
        webhooks.refuse_literal(body.url, settings.webhook_allowed)
    except webhooks.UrlRefused as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"url: {err}") from None
    await limit_creation(request, "webhooks", user_id)
    try:
        created = await webhooks.create_webhook(
            engine,
            user_id=user_id,
            url=body.url,
            allowed=settings.webhook_allowed,
            limit=settings.max_webhooks_per_user,
        )
    except webhooks.TooManyWebhooks:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"you have {settings.max_webhooks_per_user} webhooks, the most one user may "
            "hold; delete one (DELETE /webhooks/{id}) before adding another",
        ) from None
    response.headers["Location"] = f"/webhooks/{created.id}"
    return created


@router.get("", response_model=list[WebhookDocument])
async def list_(caller: CallerDep, engine: EngineDep) -> list[WebhookDocument]:
    """The caller's endpoints (without their secrets)."""
    return await webhooks.list_webhooks(engine, user_id=user_of(caller, "webhooks"))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: problem("No such webhook")},
)
async def delete(webhook_id: str, caller: CallerDep, engine: EngineDep) -> Response:
    """Stop sending to this endpoint (deliveries under way may still arrive once)."""
    try:
        await webhooks.delete_webhook(
            engine, user_id=user_of(caller, "webhooks"), webhook_id=webhook_id
        )
    except webhooks.WebhookNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
