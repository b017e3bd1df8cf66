"""The default build ID of a versioned worker: a hash of the workflow sources.

Two workers with the same workflow code are the same build wherever they run (any
replica, any image tag); a change to any workflow module is a new build, so it
can only ship as a new Worker Deployment Version (docs/operating.md, Deploys).
Not imported by the workflows themselves.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).parent


@lru_cache(maxsize=1)
def workflows_build_id() -> str:
    """`wf-` and the first 12 hex digits of a SHA-256 over every workflow module."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"wf-{digest.hexdigest()[:12]}"
