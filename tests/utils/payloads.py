"""Finding the payloads inside Temporal's protobuf messages, and decoding them in place."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.converter import PayloadCodec


def payloads_in(message: Message, skip: frozenset[str] = frozenset()) -> Iterator[Payload]:
    """Every Payload anywhere inside a protobuf message (history events, descriptions),
    except under fields named in `skip`."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skip:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif isinstance(value, Message):
            items = [value]
        else:
            items = list(value)  # a repeated field
        for item in items:
            yield from payloads_in(item, skip)


async def decode_history(history: History, codec: PayloadCodec) -> None:
    """Replace every payload of `history` by its decoded self (to save it readable)."""
    for event in history.events:
        for payload in payloads_in(event, frozenset({"search_attributes"})):
            [plain] = await codec.decode([payload])
            payload.CopyFrom(plain)
