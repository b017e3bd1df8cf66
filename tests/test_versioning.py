"""Workers are versioned outside dev and test: pinned workflows, one build per
workflow source (docs/operating.md, Deploys)."""

from __future__ import annotations

from temporalio.common import VersioningBehavior
from typer.testing import CliRunner

from reportflow.cli.app import app
from reportflow.core.config import Settings
from reportflow.worker import deployment_config
from reportflow.workflows.build import workflows_build_id


def test_dev_and_test_workers_are_unversioned_unless_told() -> None:
    for environment in ("dev", "test"):
        assert deployment_config(Settings(environment=environment)) is None
        assert deployment_config(Settings(environment=environment, worker_versioning=True))


def test_production_workers_are_pinned_to_the_workflow_sources_build() -> None:
    config = deployment_config(Settings(environment="production"))
    assert config is not None
    assert config.use_worker_versioning
    assert config.default_versioning_behavior == VersioningBehavior.PINNED
    assert config.version.deployment_name == "reportflow"
    assert config.version.build_id == workflows_build_id()
    assert workflows_build_id().startswith("wf-") and len(workflows_build_id()) == 15


def test_a_build_id_setting_names_the_build() -> None:
    config = deployment_config(Settings(environment="production", worker_build_id="v1.2.3"))
    assert config is not None and config.version.build_id == "v1.2.3"
    assert deployment_config(Settings(environment="production", worker_versioning=False)) is None


def test_cli_prints_the_build_id() -> None:
    result = CliRunner().invoke(app, ["deploy", "build-id"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == workflows_build_id()
