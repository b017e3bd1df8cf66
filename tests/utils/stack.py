"""Running the real API and worker for tests: uvicorn on a free port, the worker
in this event loop or as a separate process (for SIGKILL tests).

The code lives in `reportflow_dev.testing`, shared with `reportflow chaos`.
"""

from __future__ import annotations

from reportflow_dev.testing import (
    WorkerProcess,
    api_process,
    free_port,
    harness_secrets,
    in_process_worker,
    serve_api,
    settings_env,
    worker_process,
)

__all__ = [
    "WorkerProcess",
    "api_process",
    "free_port",
    "harness_secrets",
    "in_process_worker",
    "serve_api",
    "settings_env",
    "worker_process",
]
