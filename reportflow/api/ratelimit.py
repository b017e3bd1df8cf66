"""A per-user sliding-window limit on starting reports (the contract's 429).

In-process state: with several API processes each enforces its own window, which
bounds abuse well enough for a button that starts at most one report per range.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque


class RateLimiter:
    def __init__(self, per_minute: int, window_seconds: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window_seconds
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, key: str) -> int:
        """0 and counts the hit if allowed; else the seconds until the next one is."""
        now = time.monotonic()
        hits = self._hits[key]
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return max(1, int(self.window - (now - hits[0])) + 1)
        hits.append(now)
        return 0
