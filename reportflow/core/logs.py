"""Logging: JSON lines that carry the report ID, or short human lines under `reportflow dev`."""

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


class DevFormatter(logging.Formatter):
    """One short line a person reads: `00:47:51 worker polling … [report_id=r1]`.

    `reportflow dev` only; the level is named when it is not INFO, the logger
    when it is not one of reportflow's own.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        source = "" if record.name.startswith(_OWN) else f"{record.name}: "
        ids = [f"{name}={getattr(record, name)}" for name in _IDS if getattr(record, name, None)]
        for key in ("temporal_activity", "temporal_workflow"):
            context = getattr(record, key, None)
            if isinstance(context, dict) and not getattr(record, "report_id", None):
                ids.insert(0, f"report_id={context.get('workflow_id')}")
                break
        line = f"{when} {level}{source}{record.getMessage()}"
        if ids:
            line += f"  [{' '.join(ids)}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# The fields a dev line names (the rest are in the JSON lines of a real deployment).
_IDS = ("report_id", "user_id", "attempt")
# reportflow's own loggers: the workflows and activities log through the SDK's.
_OWN = ("reportflow", "temporalio.workflow", "temporalio.activity")


def setup_logging(level: str | None = None, *, dev: bool = False) -> None:
    """JSON lines on stderr, everything at LOG_LEVEL (INFO by default).

    `dev` (`reportflow dev`): short human lines, reportflow's own loggers at
    LOG_LEVEL and every library (Alembic, uvicorn, Temporal) at WARNING, so
    the start-up banner is not drowned.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DevFormatter() if dev else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chosen = level or os.environ.get("LOG_LEVEL", "INFO")
    root.setLevel(logging.WARNING if dev else chosen)
    if dev:
        for name in _OWN:
            logging.getLogger(name).setLevel(chosen)
    # aiosmtpd logs every SMTP conversation at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
