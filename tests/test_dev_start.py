"""The first minute of `reportflow dev`: human log lines, libraries quiet, and the
banner (URLs, demo token) printed last, once the API is ready and the worker polls."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from reportflow.core.logs import DevFormatter, JsonFormatter, setup_logging
from reportflow_dev.testing import free_port

BANNER_END = "  try: curl -X POST"


def is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("reportflow", "temporalio.workflow", "temporalio.activity")
    own = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in own.items():
        logging.getLogger(name).setLevel(was)


@pytest.mark.usefixtures("restore_logging")
def test_json_is_the_default_and_dev_is_short_and_quiet() -> None:
    setup_logging("INFO")
    root = logging.getLogger()
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    assert logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)

    setup_logging("INFO", dev=True)
    formatter = root.handlers[0].formatter
    assert isinstance(formatter, DevFormatter)
    assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
    assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.INFO)
    assert logging.getLogger("uvicorn.error").isEnabledFor(logging.WARNING)
    assert logging.getLogger("reportflow.worker").isEnabledFor(logging.INFO)
    assert logging.getLogger("temporalio.workflow").isEnabledFor(logging.INFO)

    record = logging.makeLogRecord(
        {"name": "reportflow.worker", "levelno": logging.INFO, "levelname": "INFO"}
        | {"msg": "worker polling %r", "args": ("reports",), "report_id": "r-1"}
    )
    line = formatter.format(record)
    assert line.endswith("worker polling 'reports'  [report_id=r-1]") and "\n" not in line
    warning = logging.makeLogRecord(
        {"name": "alembic.x", "levelno": logging.WARNING, "levelname": "WARNING", "msg": "hm"}
    )
    assert formatter.format(warning).endswith(" warning: alembic.x: hm")


async def read_line(stream: asyncio.StreamReader, seen: list[str]) -> str:
    raw = await stream.readline()
    if not raw:
        raise AssertionError("reportflow dev ended early:\n" + "\n".join(seen))
    line = raw.decode().rstrip("\n")
    seen.append(line)
    return line


async def test_reportflow_dev_prints_its_banner_last_and_no_json(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # The suite's Temporal server (so no fixed ports), a task queue of its own, an
    # empty working directory for var/ (database, keys, outbox) and free ports.
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"SMTP_HOST", "LOG_LEVEL"}},
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TASK_QUEUE": f"dev-start-{uuid.uuid4().hex[:8]}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SMTP_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        "dev",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,  # as a terminal shows them: one stream
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not (await read_line(process.stdout, seen)).startswith(BANNER_END):
                pass
        banner_at = next(i for i, line in enumerate(seen) if line == "reportflow is running")
        # Every part answered before the banner: the worker said it polls, the API is ready.
        assert any("worker polling task queue" in line for line in seen[:banner_at]), seen
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
        assert "demo token     rf_" in "\n".join(seen[banner_at:])
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest, _ = await process.communicate()
    after = rest.decode().splitlines()
    assert process.returncode == 0, "\n".join(seen + after)

    # No JSON line anywhere, nothing from a library at INFO: Alembic's set-up and
    # uvicorn's start-up lines are gone.
    everything = seen + after
    assert not [line for line in everything if is_json(line)], "\n".join(everything)
    assert not [line for line in everything if "alembic" in line or "uvicorn" in line]
    # After the banner: quiet until Ctrl-C, then only the worker's own goodbye.
    said = [line for line in after if line.strip()]
    assert all("draining" in line or "worker stopped" in line for line in said), said
