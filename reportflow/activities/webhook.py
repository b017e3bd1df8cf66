"""Webhook delivery activities: which endpoints to tell, and one signed POST each.

Each endpoint is its own activity, so one failing receiver is retried (for
hours, see `models.webhook_backoff`) without sending again to the others.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from reportflow.models import (
    WebhookDeliveryInput,
    WebhookDeliveryResult,
    WebhookTargets,
    WebhookTargetsInput,
)
from reportflow.service import webhooks

log = logging.getLogger(__name__)

WEBHOOK_REFUSED = "WebhookRefused"
WEBHOOK_FAILED = "WebhookFailed"


class WebhookActivities:
    def __init__(self, *, engine: AsyncEngine, allowed_hosts: frozenset[str], timeout: float):
        self.engine = engine
        self.allowed_hosts = allowed_hosts
        self.timeout = timeout

    @activity.defn(name="webhook_targets")
    async def webhook_targets(self, input: WebhookTargetsInput) -> WebhookTargets:
        return WebhookTargets(await webhooks.active_endpoints(self.engine, input.user_id))

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, input: WebhookDeliveryInput) -> WebhookDeliveryResult:
        """POST the signed event; 2xx delivers, 410 disables the endpoint, 429/503
        retry after Retry-After, anything else retries with backoff."""
        event = input.event
        extra = {"report_id": event.report_id, "webhook_id": input.endpoint_id}
        found = await webhooks.endpoint(self.engine, input.endpoint_id)
        if found is None:
            log.info("webhook endpoint deleted or disabled; not delivering", extra=extra)
            return WebhookDeliveryResult(input.endpoint_id, "gone")
        url, secret = found
        try:
            response = await webhooks.post_event(
                url, secret, event, allowed=self.allowed_hosts, timeout_seconds=self.timeout
            )
        except webhooks.AddressRefused as err:
            raise ApplicationError(str(err), type=WEBHOOK_REFUSED, non_retryable=True) from err
        except (httpx.HTTPError, OSError) as err:
            raise ApplicationError(
                f"could not reach {url}: {err or type(err).__name__}", type=WEBHOOK_FAILED
            ) from err
        code = response.status_code
        if 200 <= code < 300:
            log.info("webhook delivered", extra={**extra, "status_code": code})
            return WebhookDeliveryResult(input.endpoint_id, "delivered", code)
        if code == 410:
            await webhooks.disable(self.engine, input.endpoint_id)
            log.warning("webhook endpoint answered 410 Gone; disabled it", extra=extra)
            return WebhookDeliveryResult(input.endpoint_id, "disabled", code)
        if 300 <= code < 400:
            raise ApplicationError(
                f"{url} answered {code} (a redirect); redirects are not followed: "
                "register the final URL",
                type=WEBHOOK_REFUSED,
                non_retryable=True,
            )
        delay = None
        if code in {429, 503}:
            delay = webhooks.retry_after(response, default=timedelta(seconds=30))
        raise ApplicationError(
            f"{url} answered {code}; retrying", type=WEBHOOK_FAILED, next_retry_delay=delay
        )
