"""The worker's workflow runner skips the SDK's per-payload trip into the sandbox,
and nothing else: workflow code is still sandboxed, payloads still encrypted, and a
converter that would need the skipped answer is refused at start."""

from __future__ import annotations

import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.converter import DataConverter, SerializationContext, WithSerializationContext
from temporalio.worker import Worker

from reportflow.core.codec import (
    ENCODING,
    EncryptionCodec,
    Keyring,
    new_key_entry,
    readable_failure,
)
from reportflow.core.workflow_runner import ContextFreeRunner
from tests.utils.payloads import payloads_in
from tests.utils.small_workflows import ReadsTheWallClock, Shouting, shout
from tests.utils.wait import wait_until


def _worker(client: Client, task_queue: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[Shouting, ReadsTheWallClock],
        activities=[shout],
        workflow_runner=ContextFreeRunner(client.data_converter),
    )


async def test_payloads_are_encrypted_and_read_back(temporal_client: Client) -> None:
    task_queue = f"runner-{uuid.uuid4().hex}"
    async with _worker(temporal_client, task_queue):
        handle = await temporal_client.start_workflow(
            Shouting.run, "a private note", id=f"shout-{uuid.uuid4().hex}", task_queue=task_queue
        )
        assert await handle.result() == "A PRIVATE NOTE"
        assert await (await handle.describe()).memo() == {"heard": "a private note"}
    # Input, memo, the activity's input and result, the workflow's result: all sealed.
    events = (await handle.fetch_history()).events
    payloads = [p for event in events for p in payloads_in(event)]
    assert len(payloads) >= 5
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
    assert not any(b"private note" in event.SerializeToString().lower() for event in events)


async def test_workflow_code_is_still_sandboxed(temporal_client: Client) -> None:
    task_queue = f"runner-{uuid.uuid4().hex}"
    async with _worker(temporal_client, task_queue):
        handle = await temporal_client.start_workflow(
            ReadsTheWallClock.run, id=f"clock-{uuid.uuid4().hex}", task_queue=task_queue
        )

        async def task_failed() -> str | None:
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failure = event.workflow_task_failed_event_attributes.failure
                    return (await readable_failure(temporal_client.data_converter, failure)).message
            return None

        message = await wait_until(task_failed, lambda m: m is not None, what="a failed task")
        assert message is not None and "datetime.datetime.now" in message, message
        await handle.terminate("test: done")


class PerWorkflowCodec(EncryptionCodec, WithSerializationContext):
    """A codec that would encrypt each workflow's payloads differently."""

    def with_context(self, context: SerializationContext) -> PerWorkflowCodec:
        return PerWorkflowCodec(self.keyring)


def test_a_converter_that_uses_contexts_is_refused() -> None:
    keyring = Keyring.parse(new_key_entry("k1"))
    ContextFreeRunner(DataConverter(payload_codec=EncryptionCodec(keyring)))
    with pytest.raises(ValueError, match="serialization contexts"):
        ContextFreeRunner(DataConverter(payload_codec=PerWorkflowCodec(keyring)))
