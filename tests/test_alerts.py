"""The shipped Prometheus alert rules: valid, firing when they should, and naming
only metrics that the API and a real worker actually export."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.utils.metrics import ExportedMetrics, metric_names, promtool

RULES = Path(__file__).parent.parent / "ops" / "prometheus"


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


def rule_metric_names() -> set[str]:
    text = (RULES / "alerts.yml").read_text()
    return metric_names(" ".join(re.findall(r"expr: >?\n?((?:.*\n)*?)\s+for:", text)))


def test_rules_name_only_metrics_the_service_exports(exported_metrics: ExportedMetrics) -> None:
    names = rule_metric_names()
    assert len(names) >= 5
    missing = exported_metrics.missing(names)
    assert not missing, f"alert rules name metrics nobody exports: {missing}"
    assert "reportflow_stage_duration_seconds_count{" in exported_metrics.worker
