"""Structured (JSON lines) logging that carries the report ID."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from reportflow.core.tracing import log_ids

# Fields a record may carry through `extra=` that belong in the JSON line.
_FIELDS = (
    "report_id",
    "user_id",
    "message_id",
    "attempt",
    "stage",
    "actor",
    "action",
    "target",
    "run_id",
    # Audit lines' details (reportflow.core.audit).
    "owner",
    "report_ids",
    "where",
    "note",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        # Temporal's activity and workflow loggers attach their context here.
        for key in ("temporal_activity", "temporal_workflow"):
            context = getattr(record, key, None)
            if isinstance(context, dict):
                entry.setdefault("report_id", context.get("workflow_id"))
                entry[key.removeprefix("temporal_")] = {
                    k: context[k] for k in ("activity_type", "attempt", "run_id") if k in context
                }
        # The trace this line belongs to, when tracing is on (see reportflow.core.tracing).
        entry.update(log_ids())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    # aiosmtpd logs every SMTP conversation at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
