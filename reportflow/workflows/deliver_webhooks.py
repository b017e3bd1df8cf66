"""DeliverWebhooks: announce one report outcome to each of its user's endpoints.

GenerateReport starts it as an abandoned child as it ends, so a receiver that
is down for hours keeps its retries here while the report is already final.
Its ID names the report, outcome and run, so one outcome is announced once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from reportflow.activities.webhook import WEBHOOK_REFUSED, WebhookActivities
    from reportflow.models import (
        WebhookDeliveries,
        WebhookDeliveryInput,
        WebhookEvent,
        WebhookTargetsInput,
    )
    from reportflow.workflows.policies import backoff_retry, retry


@workflow.defn(name="DeliverWebhooks")
class DeliverWebhooks:
    @workflow.run
    async def run(self, event: WebhookEvent) -> WebhookDeliveries:
        targets = await workflow.execute_activity_method(
            WebhookActivities.webhook_targets,
            WebhookTargetsInput(event.user_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry(attempts=10, longest=timedelta(minutes=1)),
        )
        backoff = event.retry
        policy = backoff_retry(backoff, never=[WEBHOOK_REFUSED])
        results = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    WebhookActivities.deliver_webhook,
                    WebhookDeliveryInput(endpoint_id, event),
                    start_to_close_timeout=timedelta(seconds=event.attempt_seconds),
                    retry_policy=policy,
                )
                for endpoint_id in targets.endpoint_ids
            ),
            return_exceptions=True,
        )
        outcome = WebhookDeliveries()
        for endpoint_id, result in zip(targets.endpoint_ids, results, strict=True):
            if isinstance(result, ActivityError):
                workflow.logger.warning("webhook %s not delivered: %s", endpoint_id, result.cause)
                outcome.failed.append(endpoint_id)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcome.delivered.append(endpoint_id)
        return outcome
