"""Status watchers: Temporal calls that follow status *changes*, not readers by time.

Each API process keeps one `Watcher` per report someone is reading (GET or SSE),
and one per run a client follows (`?run_id=`: the page, `reportflow request`;
with several API replicas, the replica that answers a poll may not be the one
that started the run, and its watcher of the report's latest run may still hold
the previous run's final document).
The watcher holds the report's current status document, already serialized with
its ETag, and learns about changes from Temporal itself:

- the history long-poll (`wait_new_event`) wakes it when the run records an
  event (a stage upserted into the memo, an activity closed, the run closed);
- a failed activity attempt writes no event (TRAPS: `ActivityTaskStarted` is
  written when the attempt ends), so it also re-describes when describe said the
  next attempt is due, and every STATUS_REFRESH_SECONDS while an activity runs;
- an email step not done a second after it was scheduled may be waiting for its
  turn (EMAIL_RATE_PER_SECOND), which no event marks: it is described then, and
  each second while it waits;
- a finished report is re-described at most once per STATUS_REFRESH_SECONDS
  while it is read (another API replica may have started a new run of it; this
  process pokes its own watcher when it starts, redrives or cancels a run).

It re-describes only then; every reader reads the document it holds. Each
stage the run upserts into its memo is published as a document of its own,
even when several arrive in one long-poll answer, and an SSE stream sends each
in turn (the watcher keeps the last few it published). A watcher
ends STATUS_WATCH_IDLE_SECONDS after its last reader left, and at once when the
report does not exist, or when describing failed (its readers get the error,
the next reader starts a fresh watcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from reportflow.contract import StatusDocument
from reportflow.core.config import Settings
from reportflow.core.tokens import Caller
from reportflow.service.status import (
    Described,
    build_document,
    may_see,
    may_see_owned,
    read_status,
)

log = logging.getLogger(__name__)

# History events whose effect on the status document is known without a describe.
_APPLIED_LOCALLY = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    # Change nothing a reader sees: patch markers (with the TemporalChangeVersion
    # search attribute the SDK upserts beside them), the slot's local-activity
    # markers (the stage they lead to comes as a memo upsert), the webhook child's start.
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
}

# How long the watcher a start leaves waits for its first reader (fire, acknowledge,
# poll) before it ends.
START_DOCUMENT_SECONDS = 1.0
# How soon an email step is looked at again while it may wait for its turn to send.
_TURN_RECHECK_SECONDS = 1.0
# Documents a watcher keeps for streams that have not sent them yet (a run has
# five stages; a stream further behind than this skips to the latest).
_KEPT_SNAPSHOTS = 8


def _held_back(event: HistoryEvent) -> bool:
    """The slot step scheduled as an ordinary activity: the user is at capacity (its
    local attempt failed). The document's `waiting` sentence comes from the pending
    activity that only a describe shows."""
    return (
        event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "acquire_slot"
    )


@dataclass(frozen=True)
class Snapshot:
    """A status document as served: its JSON body and ETag are computed once."""

    doc: StatusDocument
    owner: str | None
    body: bytes
    etag: str

    @classmethod
    def of(cls, doc: StatusDocument, owner: str | None) -> Snapshot:
        body = doc.model_dump_json().encode()
        return cls(doc, owner, body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"')

    def visible_to(self, caller: Caller) -> bool:
        return may_see_owned(caller, self.owner)


class Watcher:
    def __init__(
        self,
        hub: Watchers,
        report_id: str,
        run_id: str | None = None,
        started: Described | None = None,
    ) -> None:
        self.hub = hub
        self.report_id = report_id
        self.run_id = run_id  # None: the report's latest run, whichever it is
        self.snapshot: Snapshot | None = None
        self._published: deque[Snapshot] = deque(maxlen=_KEPT_SNAPSHOTS)
        self.error: BaseException | None = None
        self.readers = 0
        self.last_read = time.monotonic()
        self.ready = asyncio.Event()  # the first describe answered (or failed)
        self.done = False
        self._changed = asyncio.Event()  # replaced at each change; set = "look again"
        self._dirty = asyncio.Event()  # something may have changed: describe again
        self._seen_events = 0
        self._events: list[HistoryEvent] = []  # seen by the long-poll, not yet applied
        self._stale = False  # poked: describe again whatever the events say
        self._recheck_at: float | None = None  # an email step may wait for its turn
        self._follower: asyncio.Task[None] | None = None
        self._followed_run: str | None = None
        # Made by this process's start of the run: begins from the run as the start
        # left it (no describe) and ends soon if nobody reads it.
        self._started = started
        self._unread = started is not None
        if started is not None:
            self._publish(Snapshot.of(started.doc, started.owner))
        self.task = asyncio.create_task(self._run(), name=f"watch {report_id} {run_id or ''}")

    # ------------------------------------------------------------------ readers

    def touch(self) -> None:
        self.last_read = time.monotonic()
        self._unread = False

    def poke(self) -> None:
        """Something this process did (a start, a cancel) changed the report:
        readers wait for the describe this prompts rather than read the old document."""
        self._stale = True
        if not self.done:
            self.ready.clear()
        self._dirty.set()

    async def current(self) -> Snapshot | None:
        """The document as of now (waits for the first describe); None = no such report."""
        self.touch()
        await self.ready.wait()
        if self.error is not None:
            raise self.error
        return self.snapshot

    async def changed(self, since: Snapshot | None, wait_seconds: float) -> Snapshot | None:
        """The next document published after `since` (each stage in turn, while the
        watcher still keeps it), or the same one after `wait_seconds` or once the
        watcher has ended (`done`)."""
        self.touch()
        for earlier, later in itertools.pairwise(self._published):
            if earlier is since:
                return later
        deadline = time.monotonic() + wait_seconds
        while self.snapshot is since and not self.done:
            changed = self._changed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return self.snapshot

    # ------------------------------------------------------------------ the loop

    def _publish(self, snapshot: Snapshot | None) -> None:
        if self.snapshot is None or snapshot is None or snapshot.etag != self.snapshot.etag:
            self.snapshot = snapshot
            if snapshot is not None:
                self._published.append(snapshot)
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        self.ready.set()

    def _next_wake(self, described: Described) -> float:
        """Monotonic time of the next describe that no history event would prompt."""
        settings = self.hub.settings
        now = time.monotonic()
        if described.doc.is_final:
            # A closed run never changes; the report's latest run may be a new
            # one, started from another process.
            return math.inf if self.run_id else now + settings.status_refresh_seconds
        wake = math.inf
        if described.activity_pending:
            wake = now + settings.status_refresh_seconds
        if described.doc.stage == "emailing" and described.doc.waiting is not None:
            # Held by EMAIL_RATE_PER_SECOND: no event marks when its turn comes.
            wake = now + _TURN_RECHECK_SECONDS
        if self._recheck_at is not None:
            wake = min(wake, self._recheck_at)
        if described.next_attempt_at is not None:
            due = (described.next_attempt_at - datetime.now(UTC)).total_seconds()
            # A little after the attempt is due, so describe shows it started.
            wake = min(wake, now + max(due, 0.0) + 0.05)
        return wake

    async def _describe(self) -> Described | None:
        self._dirty.clear()
        self._stale = False
        self._recheck_at = None
        described = await read_status(
            self.hub.client, self.report_id, run_id=self.run_id, settings=self.hub.settings
        )
        # Events the long-poll brought meanwhile: those past the describe still count.
        seen = described.history_length if described is not None else 0
        self._events = [e for e in self._events if e.event_id > seen]
        if self._events:
            self._dirty.set()
        return described

    async def _next(self, described: Described, timed: bool) -> Described | None:
        """What changed: applied from the new history events when they are the
        happy path's (a stage upserted into the memo, an activity scheduled or
        completed), else (or when a retry may be due) from a describe. Each stage
        upserted on the way is published on its own first, so a stream shows it
        even when the run moved on within one long-poll answer."""
        self._dirty.clear()
        events, self._events = self._events, []
        local = not (self._stale or described.doc.is_final)
        memo = dict(described.memo)
        pending = described.activity_pending
        for event in events if local else []:
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
                if memo.get("stage") != described.memo.get("stage"):
                    self._publish_memo(described, memo)  # a stage passed on the way
                fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
                values = await self.hub.client.data_converter.decode(list(fields.values()))
                for key, value in zip(fields.keys(), values, strict=True):
                    memo[key] = value
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                pending = True
                scheduled = event.activity_task_scheduled_event_attributes.activity_type.name
                if scheduled == "send_email":  # still not sent a moment later: describe
                    self._recheck_at = time.monotonic() + _TURN_RECHECK_SECONDS
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                pending = False
                self._recheck_at = None
        if (
            timed
            or not local
            or any(e.event_type not in _APPLIED_LOCALLY or _held_back(e) for e in events)
        ):
            if local and memo.get("stage") != described.memo.get("stage"):
                self._publish_memo(described, memo)
            return await self._describe()
        if memo == described.memo and pending == described.activity_pending:
            return described
        # An activity just scheduled or completed has no retry to show (attempt 1).
        doc = build_document(described.execution, memo, settings=self.hub.settings)
        return replace(described, doc=doc, memo=memo, activity_pending=pending,
                       next_attempt_at=None)  # fmt: skip

    def _publish_memo(self, described: Described, memo: dict[str, object]) -> None:
        doc = build_document(described.execution, memo, settings=self.hub.settings)
        self._publish(Snapshot.of(doc, described.owner))

    async def _run(self) -> None:
        idle_seconds = self.hub.settings.status_watch_idle_seconds
        try:
            described = self._started or await self._describe()
            while True:
                if described is None:
                    self._publish(None)
                    return
                if described.doc.run_id == self._followed_run:
                    self._seen_events = max(self._seen_events, described.history_length)
                else:  # a new run counts its events from 1 again
                    self._seen_events = described.history_length
                self._publish(Snapshot.of(described.doc, described.owner))
                if not described.doc.is_final:
                    self._follow(described.doc.run_id)
                wake = self._next_wake(described)
                while not self._dirty.is_set():
                    now = time.monotonic()
                    if now >= wake:
                        break
                    idle = START_DOCUMENT_SECONDS if self._unread else idle_seconds
                    idle_at = self.last_read + idle
                    if self.readers == 0 and idle_at <= now:
                        return
                    # Look at idleness again when it may have come (or every
                    # idle period while a stream holds the watcher).
                    until = min(wake, idle_at if idle_at > now else now + idle)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._dirty.wait(), until - now)
                described = await self._next(described, timed=not self._dirty.is_set())
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("status watcher stopped: %s", err, extra={"report_id": self.report_id})
            self.error = err
        finally:
            self.done = True
            self.ready.set()
            self._changed.set()
            if self._follower is not None:
                self._follower.cancel()
            self.hub.forget(self)

    def _follow(self, run_id: str | None) -> None:
        """Keep one history long-poll running on the run being watched."""
        if self._follower is not None and not self._follower.done():
            if self._followed_run == run_id:
                return
            self._follower.cancel()
        self._followed_run = run_id
        self._follower = asyncio.create_task(self._long_poll(run_id))

    async def _long_poll(self, run_id: str | None) -> None:
        handle = self.hub.client.get_workflow_handle(self.report_id, run_id=run_id)
        try:
            async for event in handle.fetch_history_events(wait_new_event=True, skip_archival=True):
                if event.event_id > self._seen_events:
                    self._seen_events = event.event_id
                    self._events.append(event)
                    self._dirty.set()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # Describe again (it raises, and readers learn, if Temporal is gone);
            # a pause first, so a failing long-poll cannot spin.
            log.warning("history long-poll failed: %s", err, extra={"report_id": self.report_id})
            await asyncio.sleep(1.0)
            self._dirty.set()


class Watchers:
    """The watchers of one API process, by report ID and followed run."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._watchers: dict[str, dict[str | None, Watcher]] = {}

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._watchers.values())

    def watcher(self, report_id: str, run_id: str | None = None) -> Watcher:
        runs = self._watchers.setdefault(report_id, {})
        watcher = runs.get(run_id)
        if watcher is None or watcher.done:
            watcher = runs[run_id] = Watcher(self, report_id, run_id)
        return watcher

    def forget(self, watcher: Watcher) -> None:
        runs = self._watchers.get(watcher.report_id, {})
        if runs.get(watcher.run_id) is watcher:
            del runs[watcher.run_id]
            if not runs:
                del self._watchers[watcher.report_id]

    def poke(self, report_id: str) -> None:
        for watcher in list(self._watchers.get(report_id, {}).values()):
            watcher.poke()

    def started(self, started: Described) -> Snapshot:
        """This process has just started the run `started`: a status read that
        follows the 202 (fire, acknowledge, poll) gets its document at once. The
        watcher asks no describe: it follows the run's history from the start's
        event, so whatever the run does next (a stage, its end, a terminate from
        outside) reaches it as any watched change does. A watcher nobody reads ends
        after START_DOCUMENT_SECONDS; one that already follows the report is poked
        instead (it may hold an older run) and describes."""
        report_id = started.doc.report_id
        latest = self._watchers.get(report_id, {}).get(None)
        self.poke(report_id)
        if latest is None or latest.done:
            seeded = Watcher(self, report_id, started=started)
            self._watchers.setdefault(report_id, {})[None] = seeded
            assert seeded.snapshot is not None
            return seeded.snapshot
        return Snapshot.of(started.doc, started.owner)

    async def read(
        self, report_id: str, caller: Caller, run_id: str | None = None
    ) -> Snapshot | None:
        """The document of the report's latest run, or of `run_id`; None when there
        is no such report or run, or it is not the caller's (the two are not told
        apart). Someone else's report ID is refused before anything is watched."""
        if not may_see(caller, report_id):
            return None
        snapshot = await self.watcher(report_id, run_id).current()
        return snapshot if snapshot is not None and snapshot.visible_to(caller) else None

    @contextlib.contextmanager
    def reading(self, report_id: str, run_id: str | None = None) -> Iterator[Watcher]:
        """Hold a watcher open for a long reader (an SSE stream)."""
        watcher = self.watcher(report_id, run_id)
        watcher.readers += 1
        try:
            yield watcher
        finally:
            watcher.readers -= 1
            watcher.touch()

    async def close(self) -> None:
        tasks = [w.task for runs in self._watchers.values() for w in runs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
