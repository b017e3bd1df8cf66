"""How many `/events` streams each token holds open, in this API process.

A stream counts from its start until it ends, and at most its maximum lifetime
(plus a minute): a stream whose end went unseen (the client vanished before the
first byte) stops counting by itself.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict


class StreamCounter:
    def __init__(self, max_per_token: int, max_seconds: float) -> None:
        self.max_per_token = max_per_token
        self.max_seconds = max_seconds
        self._open: dict[str, dict[str, float]] = defaultdict(dict)

    def _prune(self, token_id: str) -> dict[str, float]:
        streams = self._open[token_id]
        stale = time.monotonic() - self.max_seconds - 60
        for stream_id in [s for s, began in streams.items() if began < stale]:
            del streams[stream_id]
        return streams

    def open(self, token_id: str) -> str | int:
        """A stream ID, or the seconds to wait (Retry-After) when the token is at its cap."""
        streams = self._prune(token_id)
        if len(streams) >= self.max_per_token:
            oldest_ends = min(streams.values()) + self.max_seconds
            return max(1, min(30, math.ceil(oldest_ends - time.monotonic())))
        stream_id = uuid.uuid4().hex
        streams[stream_id] = time.monotonic()
        return stream_id

    def close(self, token_id: str, stream_id: str) -> None:
        streams = self._open.get(token_id)
        if streams is not None:
            streams.pop(stream_id, None)
            if not streams:
                del self._open[token_id]

    def count(self, token_id: str) -> int:
        return len(self._prune(token_id))
