"""The patches that running workflows must take, each with the day it was added.

The rule (docs/operating.md, Changing a workflow): a change to a workflow ships as
a new worker build. Workers are pinned (Worker Versioning), so runs that started
on the old build finish there and the new code never replays an old history; no
patch is needed. Only a change that must reach runs *already in flight* (a fix
they cannot finish without) is a patch: register its ID here with today's date,
call `patched(ID)` (never `workflow.patched` directly), and deploy it as an
upgrade of the running build's code. Once every run started before it has ended
(a report lives at most a day; PATCH_WINDOW_DAYS leaves margin), remove the
patch: the `if` and its old branch, and the entry here.
tests/test_patches.py fails when an entry outlives its window or a
`workflow.patched` call bypasses this registry.
"""

from __future__ import annotations

from datetime import date

from temporalio import workflow

# A report run lasts minutes; retries and a redrive stay within a day. The margin
# covers a deploy that is slow to drain.
PATCH_WINDOW_DAYS = 14

# Patch ID -> the day it was added. Empty: every run executes the current code.
PATCHES: dict[str, date] = {}


def patched(patch_id: str) -> bool:
    """`workflow.patched` for a registered patch (see the module's rule)."""
    if patch_id not in PATCHES:
        raise ValueError(f"patch {patch_id!r} is not registered in {__name__}.PATCHES")
    return workflow.patched(patch_id)
