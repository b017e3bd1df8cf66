"""The shipped Grafana dashboard and Prometheus config: valid, provisioned together, and
querying only metrics (and labels) that the API and a real worker export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.utils.metrics import PROMETHEUS_OWN, ExportedMetrics, metric_names, promtool

OPS = Path(__file__).parent.parent / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "reportflow.json"
PROVISIONING = OPS / "grafana" / "provisioning"
# What Grafana substitutes before a query reaches Prometheus.
VARIABLES = {"$__rate_interval": "1m", "$task_queue": ".*"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    """Every PromQL expression of every panel, with Grafana's variables filled in."""
    exprs = []
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no bare "check this expression": each query becomes a recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [e for e in queries() if "$" in e], "a Grafana variable is left unsubstituted"


def test_dashboard_shows_what_operators_asked_for() -> None:
    text = " ".join(queries())
    titles = {p["title"] for p in panels()}
    assert {
        "Reports per minute",
        "Backlog",
        "Oldest backlog age",
        "Stage duration p50 / p95",
        "Email retries per minute",
        "Alert rules",
    } <= titles
    assert "reportflow_reports_started_total" in text
    assert (
        "outcome" in text and "histogram_quantile(0.95" in text and "histogram_quantile(0.5" in text
    )
    assert 'activity_type="send_email"' in text and "ALERTS{" in text
    # The ALERTS filter covers every shipped rule.
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    alerts = [r["alert"] for group in rules["groups"] for r in group["rules"]]
    assert alerts and all(re.fullmatch("Report.*", name) for name in alerts)


def test_dashboard_queries_only_metrics_the_service_exports(
    exported_metrics: ExportedMetrics,
) -> None:
    text = " ".join(queries())
    names = metric_names(text)
    assert len(names) >= 8
    missing = exported_metrics.missing(names)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    # Any other series it reads is one Prometheus makes itself from the alert rules.
    others = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\{", text)) - names
    assert others <= PROMETHEUS_OWN, others
    # Every label it filters or groups a metric on is one that metric carries.
    for name, matchers in re.findall(r"\b((?:reportflow|temporal)_[a-z_]+)\{([^}]*)\}", text):
        used = set(re.findall(r"(\w+)=~?\"", matchers))
        assert used <= exported_metrics.labels(name), (name, used)
    for grouping, name in re.findall(
        r"by \(([\w, ]+)\) \((?:rate|increase)?\(?((?:reportflow|temporal)_[a-z_]+)", text
    ):
        used = {label.strip() for label in grouping.split(",")}
        assert used <= exported_metrics.labels(name) | {"le"}, (name, used)


def test_grafana_provisioning_loads_the_dashboard_from_prometheus() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "datasource")
    assert variable["current"]["value"] == source["uid"]
    for panel in panels():
        uids = [panel["datasource"]["uid"], *(t["datasource"]["uid"] for t in panel["targets"])]
        assert set(uids) == {"${datasource}"}, panel["title"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "reportflow.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel IDs must be unique"


def test_prometheus_config_is_valid_and_scrapes_api_and_workers(tmp_path: Path) -> None:
    path = OPS / "prometheus" / "prometheus.yml"
    # promtool wants the scrape's token file to exist: compose mounts it as a secret
    # at /run/secrets/metrics_token; here a copy of the config points at a temp one.
    token = tmp_path / "metrics_token"
    token.write_text("test-metrics-token")
    shutil.copy(OPS / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    copy = tmp_path / "prometheus.yml"
    copy.write_text(path.read_text().replace("/run/secrets/metrics_token", str(token)))
    result = subprocess.run(
        [promtool(), "check", "config", str(copy)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs["reportflow-api"]["metrics_path"] == "/metrics"
    assert "reportflow-worker" in jobs
