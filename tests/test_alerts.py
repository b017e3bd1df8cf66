"""The shipped Prometheus alert rules: valid, firing when they should, and naming
only metrics that the API and a real worker actually export."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from reportflow.db import create_engine, create_schema
from reportflow.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import free_port, serve_api, worker_process
from tests.utils.wait import wait_until

RULES = Path(__file__).parent.parent / "ops" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's `prometheus` package")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def test_rules_are_valid() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_rules_fire_on_their_symptoms_and_stay_quiet_otherwise() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", str(RULES / "alerts.test.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_says_what_to_do() -> None:
    text = (RULES / "alerts.yml").read_text()
    for block in text.split("- alert:")[1:]:
        name = block.split()[0]
        comment = text[: text.index(f"- alert: {name}")].rsplit("\n\n", 1)[-1]
        assert "# Do:" in comment, f"{name} has no comment saying what to do"


def metric_names() -> set[str]:
    text = (RULES / "alerts.yml").read_text()
    exprs = " ".join(re.findall(r"expr: >?\n?((?:.*\n)*?)\s+for:", text))
    return set(re.findall(r"\b((?:reportflow|temporal)_[a-z_]+)", exprs))


async def test_rules_name_only_metrics_the_service_exports(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    metrics_port = free_port()
    settings = make_settings(tmp_path, smtp.port, worker_metrics_bind=f"127.0.0.1:{metrics_port}")
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    address = temporal_env.client.service_client.config.target_host

    with worker_process(settings, address, tmp_path / "worker.log"):
        async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
            report_id = (await http.post("/reports", json={}, headers=user.headers)).json()[
                "report_id"
            ]
            await wait_status(http, user, report_id, FINAL)
            api_text = (await http.get("/metrics")).text
            worker_text = (
                await wait_until(
                    lambda: http.get(f"http://127.0.0.1:{metrics_port}/metrics"),
                    lambda r: "reportflow_report_duration_seconds_count" in r.text,
                    what="the worker's report duration metric",
                )
            ).text

    exported = api_text + worker_text
    names = metric_names()
    assert len(names) >= 5
    missing = {
        name for name in names if f"\n{name}{{" not in exported and f"\n{name} " not in exported
    }
    assert not missing, f"alert rules name metrics nobody exports: {missing}"
    assert "reportflow_stage_duration_seconds_count{" in worker_text
