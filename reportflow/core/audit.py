"""The audit trail: one structured log line per admin action, with who and what.

Lines go to the `reportflow.core.audit` logger (JSON, like every log here) with
`actor` (the token ID and whose it is, or the operator's OS user for commands
run on a host), `action` and `target`, so a log pipeline can keep them apart.
"""

from __future__ import annotations

import getpass
import logging

log = logging.getLogger("reportflow.core.audit")


def audit(actor: str, action: str, target: str, **details: object) -> None:
    log.info(
        "audit: %s %s %s",
        actor,
        action,
        target,
        extra={"actor": actor, "action": action, "target": target, **details},
    )


def operator() -> str:
    """Who runs a command on a host (`reportflow token revoke`, `reportflow dlq redrive`)."""
    try:
        return f"os-user {getpass.getuser()}"
    except OSError:
        return "os-user unknown"
