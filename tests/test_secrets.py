"""No silent public default: `reportflow api` and `reportflow worker` refuse to start
without SECRET_KEY and PAYLOAD_ENCRYPTION_KEYS; `reportflow dev` makes its own under
var/ and refuses a non-loopback HOST unless told --public."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from reportflow.api.app import create_app
from reportflow.core.codec import Keyring
from reportflow.core.config import DEV_SECRET, Settings
from reportflow.dev import dev_secrets, is_loopback, run_dev, start_temporal
from reportflow_dev.testing import free_port


async def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "reportflow.cli", "api"],
        ["-m", "reportflow.cli", "worker"],
        ["-m", "reportflow.worker"],
    ],
    ids=["api", "worker", "worker-module"],
)
async def test_api_and_worker_refuse_to_start_without_secrets(
    command: list[str], tmp_path: Path
) -> None:
    # An empty working directory (no .env), a free port, nothing else configured.
    env = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "PAYLOAD_ENCRYPTION_KEYS"}
    }
    env["PORT"] = str(free_port())
    code, out = await run([sys.executable, *command], env, tmp_path)
    assert code != 0
    assert "refusing to start without SECRET_KEY" in out
    assert "PAYLOAD_ENCRYPTION_KEYS" in out and "reportflow keygen" in out

    # A real SECRET_KEY alone is not enough: the payload keys are still missing.
    code, out = await run([sys.executable, *command], {**env, "SECRET_KEY": "x" * 43}, tmp_path)
    assert code != 0
    assert "refusing to start without PAYLOAD_ENCRYPTION_KEYS" in out


async def test_keygen_prints_settings_that_parse(tmp_path: Path) -> None:
    code, out = await run(
        [sys.executable, "-m", "reportflow.cli", "keygen", "--key-id", "k2"],
        dict(os.environ),
        tmp_path,
    )
    assert code == 0, out
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert len(values["SECRET_KEY"]) >= 40
    assert Keyring.parse(values["PAYLOAD_ENCRYPTION_KEYS"]).current == "k2"
    settings = Settings(
        secret_key=values["SECRET_KEY"],
        payload_encryption_keys=SecretStr(values["PAYLOAD_ENCRYPTION_KEYS"]),
    )
    assert settings.missing_secrets() == []


def test_dev_makes_its_secrets_under_var_and_keeps_them(tmp_path: Path) -> None:
    bare = Settings(secret_key=DEV_SECRET, payload_encryption_keys=SecretStr(""))
    first = dev_secrets(bare, tmp_path)
    assert first.missing_secrets() == []
    assert first.keyring().current == "dev1"
    for name in ("secret-key", "payload-keys"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    again = dev_secrets(bare, tmp_path)
    assert again.secret_key == first.secret_key
    assert again.keyring() == first.keyring()
    # Set in the environment, they win over var/.
    own = Settings(secret_key="s" * 43, payload_encryption_keys=SecretStr("mine:" + "A" * 43 + "="))
    assert dev_secrets(own, tmp_path).keyring().current == "mine"


async def test_dev_refuses_a_public_host_unless_told(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(SystemExit, match=r"not a loopback address.*--public"):
        await run_dev(Settings(host="0.0.0.0"))
    code, out = await run(
        [sys.executable, "-m", "reportflow.cli", "dev"],
        {**os.environ, "HOST": "0.0.0.0"},
        tmp_path,
    )
    assert code != 0 and "--public" in out
    assert not (tmp_path / "var").exists()  # refused before anything started


async def test_dev_web_ui_decodes_through_the_api_codec(tmp_path: Path) -> None:
    """`reportflow dev` starts the Web UI with --ui-codec-endpoint; the UI says so."""
    ui_port = free_port()
    env = await start_temporal(
        "http://localhost:8000/codec", port=free_port(), ui_port=ui_port, var=tmp_path
    )
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            settings = (await http.get(f"http://127.0.0.1:{ui_port}/api/v1/settings")).json()
    finally:
        await env.shutdown()
    assert settings["Codec"]["Endpoint"] == "http://localhost:8000/codec"


async def test_dev_codec_takes_the_dev_ui_without_a_token_and_nobody_else(
    tmp_path: Path,
) -> None:
    from tests.conftest import make_settings

    ui = "http://localhost:8233"
    app = create_app(make_settings(tmp_path, 25), dev_codec_origin=ui)
    body = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "MQ=="}]}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        from_ui = await http.post("/codec/decode", json=body, headers={"Origin": ui})
        no_origin = await http.post("/codec/decode", json=body)
        other = await http.post("/codec/decode", json=body, headers={"Origin": "http://x.test"})
    assert from_ui.status_code == 200 and from_ui.json() == body
    assert no_origin.status_code == 401
    assert other.status_code == 403
