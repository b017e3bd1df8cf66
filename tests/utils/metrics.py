"""What the API's /metrics and a real worker's metrics endpoint export, for checking
that the shipped alert rules and dashboard name only metrics that exist.

One run per session: a worker process with its metrics endpoint on and the API under
uvicorn; one report goes through with its first email deferred (a 4xx), so the
failure and retry series exist too. Used as the `exported_metrics` fixture.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import free_port, serve_api, worker_process
from tests.utils.wait import wait_until

# Series Prometheus makes itself from the alert rules; no target exports them.
PROMETHEUS_OWN = {"ALERTS", "ALERTS_FOR_STATE"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's `prometheus` package")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


@dataclass(frozen=True)
class ExportedMetrics:
    api: str
    worker: str

    @property
    def text(self) -> str:
        return self.api + "\n" + self.worker

    def labels(self, name: str) -> set[str]:
        """Every label name the samples of metric `name` carry."""
        found: set[str] = set()
        for labels in re.findall(rf"^{re.escape(name)}\{{(.*?)\}} ", self.text, re.MULTILINE):
            found.update(re.findall(r'(\w+)="', labels))
        return found

    def missing(self, names: Iterable[str]) -> set[str]:
        """The names no sample line carries (`name{...} v` or `name v`)."""
        return {
            name
            for name in names
            if f"\n{name}{{" not in self.text and f"\n{name} " not in self.text
        }


def metric_names(promql: str) -> set[str]:
    """The reportflow and Temporal SDK metric names a PromQL text uses."""
    return set(re.findall(r"\b((?:reportflow|temporal)_[a-z_]+)\b", promql))


@pytest.fixture(scope="session")
async def exported_metrics(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> AsyncIterator[ExportedMetrics]:
    tmp = tmp_path_factory.mktemp("metrics")
    metrics_port = free_port()
    settings = make_settings(tmp, smtp.port, worker_metrics_bind=f"127.0.0.1:{metrics_port}")
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    smtp.refuse(1, "451 4.3.0 Try again later", to=f"{user_id}@example.com")
    address = temporal_env.client.service_client.config.target_host

    with worker_process(settings, address, tmp / "worker.log"):
        async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
            report_id = (await http.post("/reports", json={}, headers=user.headers)).json()[
                "report_id"
            ]
            done = await wait_status(http, user, report_id, FINAL)
            assert done["status"] == "completed", done
            api_text = (await http.get("/metrics")).text
            worker_text = (
                await wait_until(
                    lambda: http.get(f"http://127.0.0.1:{metrics_port}/metrics"),
                    lambda r: "reportflow_report_duration_seconds_count" in r.text,
                    what="the worker's report duration metric",
                )
            ).text
    yield ExportedMetrics(api=api_text, worker=worker_text)
