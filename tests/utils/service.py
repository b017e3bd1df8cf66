"""A private service for one test module: the real API and (optionally) an
in-process worker on a task queue of their own, with settings overridden."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule
from tests.conftest import FAST_BACKOFF, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import Bearer, render_held
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api

# Renders may fail for a long while without the report failing, so a test can
# hold a report in its render step (see `hold_render`) as long as it needs.
PATIENT_RENDER = Backoff(initial_seconds=0.2, coefficient=2.0, maximum_seconds=1.0,
                         maximum_attempts=200)  # fmt: skip


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    http: httpx.AsyncClient

    async def user(self) -> tuple[str, Bearer]:
        user_id = await create_user(self.engine)
        return user_id, Bearer(await create_token(self.engine, user_id=user_id))

    async def admin(self) -> Bearer:
        return Bearer(await create_token(self.engine, admin=True))

    def report_dir(self, report_id: str) -> Path:
        return self.settings.report_store_path / report_id

    def hold_render(self, report_id: str) -> contextlib.AbstractContextManager[None]:
        return render_held(self.settings.report_store_path, report_id)


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, smtp: SmtpServer, client: Client, *, worker: bool = True, **overrides: Any
) -> AsyncIterator[Stack]:
    """API and (unless `worker=False`) an in-process worker on a task queue of their own."""
    overrides.setdefault(
        "retry", RetrySchedule(query=FAST_BACKOFF, render=PATIENT_RENDER, email=FAST_BACKOFF)
    )
    settings = make_settings(tmp_path, smtp.port, **overrides)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    async with contextlib.AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(in_process_worker(settings, client))
        url = await stack.enter_async_context(serve_api(settings))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
        yield Stack(settings, engine, http)
    await engine.dispose()
