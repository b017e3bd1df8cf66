"""An API of its own for a test, whose Temporal calls are counted at its client."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from reportflow.api.app import create_app
from reportflow.api.watch import Watchers
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import Bearer, last_90_days
from tests.utils.stack import serve_api


@dataclass
class CountedApi:
    http: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    user: Bearer
    calls: Counter[str]  # Temporal RPCs by name, e.g. "describe_workflow_execution"

    @property
    def watchers(self) -> Watchers:
        watchers: Watchers = self.app.state.watchers
        return watchers

    async def new_token(self, *, admin: bool = False, email: object = None) -> Bearer:
        engine = create_engine(self.settings.database_url)
        try:
            if admin:
                return Bearer(await create_token(engine, admin=True))
            user_id = await create_user(engine, email=email)  # type: ignore[arg-type]
            return Bearer(await create_token(engine, user_id=user_id))
        finally:
            await engine.dispose()


def count_rpcs(client: Client) -> Counter[str]:
    """Count every RPC the client makes, by name: they all pass through its
    service client's one call method."""
    calls: Counter[str] = Counter()
    service = client.service_client
    rpc_call = service._rpc_call

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[kwargs["rpc"]] += 1
        return await rpc_call(*args, **kwargs)

    service._rpc_call = counted  # type: ignore[method-assign]
    return calls


@contextlib.asynccontextmanager
async def counted_api(tmp: Path, smtp_port: int, **overrides: object) -> AsyncIterator[CountedApi]:
    settings = make_settings(tmp, smtp_port, **overrides)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    user_id = await create_user(engine, transactions=sample_transactions(start, 20, rng_seed=5))
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    app = create_app(settings)
    async with (
        serve_api(settings, app=app) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        yield CountedApi(http, app, settings, user, count_rpcs(app.state.temporal))
