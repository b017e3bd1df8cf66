"""Encrypted payloads: Temporal's history holds no personal data in clear; the codec
endpoint decodes it for admins; keys rotate without breaking a running report."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from reportflow.core.codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    Keyring,
    KeyringError,
    new_key_entry,
)
from reportflow.core.temporal import temporal_cli_path, with_codec
from reportflow.core.tokens import create_token
from reportflow.models import ReportResult
from reportflow.service.reports import start_report
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.payloads import payloads_in
from tests.utils.reportflow_http import FINAL, Bearer, last_90_days, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker
from tests.utils.wait import wait_until


class Secrets:
    """A user whose every personal detail is unique text we can search for."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = f"Zebulon Quixote {tag}"
        self.merchant = f"Secret Bistro {tag}"
        self.amount = 987_654 + int(tag[:4], 16)  # cents, unique per test
        self.email: str = ""

    def needles(self) -> dict[str, bytes]:
        return {
            "email": self.email.encode(),
            "name": self.name.encode(),
            "merchant": self.merchant.encode(),
            "amount": str(self.amount).encode(),
        }


async def _user(engine: AsyncEngine, secrets: Secrets) -> tuple[str, Bearer]:
    day = datetime.combine(datetime.now(UTC).date() - timedelta(days=2), time(12))
    user_id = await create_user(
        engine,
        name=secrets.name,
        transactions=[(day, -secrets.amount, secrets.merchant, "restaurants")],
    )
    secrets.email = f"{user_id}@example.com"
    return user_id, Bearer(await create_token(engine, user_id=user_id))


def _clear_text_hits(raw: bytes, secrets: Secrets) -> list[str]:
    return [what for what, needle in secrets.needles().items() if needle in raw]


@pytest.mark.usefixtures("worker")
async def test_history_holds_no_personal_data_without_the_codec(
    http: httpx.AsyncClient,
    app_engine: AsyncEngine,
    temporal_env: WorkflowEnvironment,
    smtp: SmtpServer,
) -> None:
    secrets = Secrets()
    user_id, user = await _user(app_engine, secrets)
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL)
    assert done["status"] == "completed", done
    assert done["result"]["emailed_to"] == [secrets.email]  # the API reads through the codec

    # A client with Temporal's default converter sees what an operator without
    # the keys sees: the raw history and description.
    plain = temporal_env.client.get_workflow_handle(report_id)
    history = await plain.fetch_history()
    description = await plain.describe()
    for what in (history, description):
        raw = (what.to_json() if hasattr(what, "to_json") else "").encode()
        assert _clear_text_hits(raw, secrets) == []
    for message in (*history.events, description.raw_description):
        assert _clear_text_hits(message.SerializeToString(), secrets) == [], message
    # Search attributes never pass through a codec: ours carry the opaque user ID only.
    sa = frozenset({"search_attributes"})
    # The SDK writes a patch's marker (reportflow/workflows/patches.py; none today)
    # itself, past the codec: it holds the patch's name, nothing of the user's. A local
    # activity's marker (the slot taken, given back) holds the SDK's bookkeeping
    # in clear too (sequence, attempt, activity type, times); its result is ours.
    payloads = []
    local_results = 0
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            continue
        if marker.marker_name == "core_local_activity":
            results = list(payloads_in(marker.details["result"]))
            local_results += len(results)
            payloads += results
            continue
        payloads += payloads_in(event, sa)
    assert local_results >= 1
    payloads += list(payloads_in(description.raw_description, sa))
    assert len(payloads) > 10
    assert [p for p in payloads if p.metadata.get("encoding") != ENCODING] == []
    attributes = description.raw_description.workflow_execution_info.search_attributes
    assert attributes.indexed_fields["ReportUserId"].data == json.dumps(user_id).encode()


@pytest.mark.usefixtures("worker")
async def test_failure_messages_are_encrypted_and_the_api_reads_them(
    http: httpx.AsyncClient,
    app_engine: AsyncEngine,
    temporal_env: WorkflowEnvironment,
    smtp: SmtpServer,
) -> None:
    secrets = Secrets()
    _, user = await _user(app_engine, secrets)
    # A permanent refusal whose reply names the address, as real relays do.
    smtp.refuse(1, f"550 5.1.1 <{secrets.email}> no such mailbox", to=secrets.email)
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    failed = await wait_status(http, user, report_id, FINAL)

    assert failed["status"] == "failed", failed
    # The user is told a code and a sentence; the server's reply is the operators'.
    assert failed["error"]["code"] == "email_rejected"
    assert secrets.email not in json.dumps(failed)
    admin = Bearer(await create_token(app_engine, admin=True))
    listed = await wait_until(
        lambda: http.get("/admin/reports", params={"status": "failed"}, headers=admin.headers),
        lambda r: any(row["report_id"] == report_id for row in r.json()["reports"]),
        timeout=30,
        what="the failed report in the dead-letter view",
    )
    row = next(row for row in listed.json()["reports"] if row["report_id"] == report_id)
    assert secrets.email in row["message"]  # decrypted for the admin
    history = await temporal_env.client.get_workflow_handle(report_id).fetch_history()
    assert history.events[-1].HasField("workflow_execution_failed_event_attributes")
    for event in history.events:
        assert _clear_text_hits(event.SerializeToString(), secrets) == [], event


@pytest.mark.usefixtures("worker")
async def test_codec_endpoint_decodes_for_admins_and_the_temporal_cli(
    http: httpx.AsyncClient, app_engine: AsyncEngine, temporal_env: WorkflowEnvironment
) -> None:
    secrets = Secrets()
    _, user = await _user(app_engine, secrets)
    admin = Bearer(await create_token(app_engine, admin=True))
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "completed"

    history = await temporal_env.client.get_workflow_handle(report_id).fetch_history()
    encrypted = [p for event in history.events for p in payloads_in(event)]
    body = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in encrypted
        ]
    }
    decoded = await http.post("/codec/decode", json=body, headers=admin.headers)
    assert decoded.status_code == 200, decoded.text
    plain = b"".join(base64.b64decode(p.get("data", "")) for p in decoded.json()["payloads"])
    assert _clear_text_hits(plain, secrets) == ["email", "name", "merchant", "amount"]

    # Encode then decode is the identity.
    one = {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IngiCg=="}]}
    encoded = await http.post("/codec/encode", json=one, headers=admin.headers)
    assert encoded.json()["payloads"][0]["data"] != "IngiCg=="
    again = await http.post("/codec/decode", json=encoded.json(), headers=admin.headers)
    assert again.json() == one

    # The command in docs/operating.md: `temporal workflow show` through the codec endpoint.
    address = temporal_env.client.service_client.config.target_host

    async def show(*codec: str) -> str:
        process = await asyncio.create_subprocess_exec(
            temporal_cli_path(),
            "workflow",
            "show",
            "--workflow-id",
            report_id,
            "--address",
            address,
            "-o",
            "json",
            *codec,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode()

    token = admin.headers["Authorization"]
    endpoint = str(http.base_url).rstrip("/") + "/codec"
    readable = payload_bytes(
        json.loads(await show("--codec-endpoint", endpoint, "--codec-auth", token))
    )
    assert _clear_text_hits(readable, secrets) == ["email", "name", "merchant", "amount"]
    assert _clear_text_hits(payload_bytes(json.loads(await show())), secrets) == []


def payload_bytes(document: Any) -> bytes:
    """The bytes of every payload's `data` (base64) in a JSON history."""
    if isinstance(document, dict):
        found = b""
        for key, value in document.items():
            if key == "data" and isinstance(value, str):
                found += base64.b64decode(value) + b"\n"
            else:
                found += payload_bytes(value)
        return found
    if isinstance(document, list):
        return b"".join(payload_bytes(item) for item in document)
    return b""


async def test_codec_endpoint_refuses_users_strangers_and_other_origins(
    http: httpx.AsyncClient, make_user: Any, app_engine: AsyncEngine
) -> None:
    user = await make_user()
    admin = Bearer(await create_token(app_engine, admin=True))
    body: dict[str, list[object]] = {"payloads": []}
    ui = "http://localhost:8233"  # TEMPORAL_UI_URL's default

    assert (await http.post("/codec/decode", json=body)).status_code == 401
    refused = await http.post("/codec/decode", json=body, headers=user.headers)
    assert refused.status_code == 403, refused.text
    assert "admin token" in refused.json()["detail"]
    assert (await http.post("/codec/decode", json=body, headers=admin.headers)).status_code == 200

    def preflight(origin: str) -> dict[str, str]:
        return {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        }

    allowed = await http.options("/codec/decode", headers=preflight(ui))
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ui
    granted = {
        h.strip().lower() for h in allowed.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"content-type", "x-namespace", "authorization"} <= granted

    evil = "http://evil.example"
    denied = await http.options("/codec/decode", headers=preflight(evil))
    assert denied.status_code == 403
    assert "access-control-allow-origin" not in denied.headers
    from_evil = await http.post(
        "/codec/decode", json=body, headers={**admin.headers, "Origin": evil}
    )
    assert from_evil.status_code == 403
    from_ui = await http.post("/codec/decode", json=body, headers={**admin.headers, "Origin": ui})
    assert from_ui.headers["Access-Control-Allow-Origin"] == ui


async def _post_without_finishing(api_url: str, path: str, token: str) -> bytes:
    """A POST that declares a megabyte and sends ten bytes of it, then waits: what
    comes back before the body is complete (a server that reads first answers nothing)."""
    parts = urlsplit(api_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000\r\n\r\n".encode()
            + b'{"payloads'
        )
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_codec_checks_the_token_before_it_reads_a_body(
    api_url: str, http: httpx.AsyncClient, make_user: Any, app_engine: AsyncEngine
) -> None:
    """An outsider's (or a user's) token is refused before a byte of the body is read:
    nobody can hold the codec's buffers without an admin token."""
    user = await make_user()
    stranger = await _post_without_finishing(api_url, "/codec/decode", "rf_not-a-token")
    assert stranger.startswith(b"HTTP/1.1 401")
    not_admin = await _post_without_finishing(api_url, "/codec/encode", user.token)
    assert not_admin.startswith(b"HTTP/1.1 403")

    admin = Bearer(await create_token(app_engine, admin=True))
    bad = await http.post("/codec/decode", content=b'{"payloads": 3}', headers=admin.headers)
    assert bad.status_code == 422 and "payloads" in bad.json()["detail"]
    huge = await http.post("/codec/decode", content=b" " * (5 * 1024 * 1024), headers=admin.headers)
    assert huge.status_code == 413


async def test_report_started_under_key_1_completes_after_rotating_to_key_2(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    key1, key2 = new_key_entry("key1"), new_key_entry("key2")
    before = make_settings(tmp_path, smtp.port, payload_encryption_keys=SecretStr(key1))
    after = before.model_copy(update={"payload_encryption_keys": SecretStr(f"{key2},{key1}")})
    client1, client2 = (
        with_codec(temporal_env.client, before),
        with_codec(temporal_env.client, after),
    )
    from reportflow.core.db import create_engine, create_schema

    engine = create_engine(before.database_url)
    await create_schema(engine)
    secrets = Secrets()
    user_id, _ = await _user(engine, secrets)
    await engine.dispose()

    start, end = last_90_days()
    report_id = (
        await start_report(client1, before, user_id=user_id, start=start, end=end)
    ).report_id
    handle = client2.get_workflow_handle(report_id, result_type=ReportResult)

    async def stage() -> str:
        memo = await (await client1.get_workflow_handle(report_id).describe()).memo()
        return str(memo.get("stage"))

    async with in_process_worker(before, client1):
        # The query's result (name, merchants, amounts) is now in history under key 1.
        await wait_until(stage, lambda s: s in {"rendering", "emailing", "done"}, what="query done")
    async with in_process_worker(after, client2):  # rotated: key 2 encrypts, key 1 decrypts
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.emailed_to == [secrets.email]
    assert len(smtp.messages_to(secrets.email)) == 1
    history = await temporal_env.client.get_workflow_handle(report_id).fetch_history()
    used = {
        p.metadata[KEY_ID].decode()
        for e in history.events
        for p in payloads_in(e)
        if KEY_ID in p.metadata
    }
    assert used == {"key1", "key2"}
    # Key 1 is still needed: a keyring without it cannot read the run's input.
    only2 = with_codec(
        temporal_env.client, before.model_copy(update={"payload_encryption_keys": SecretStr(key2)})
    )
    with pytest.raises(KeyringError, match="key1"):
        await (await only2.get_workflow_handle(report_id).describe()).memo()


async def test_keyring_parses_rotates_and_detects_tampering() -> None:
    with pytest.raises(KeyringError, match="PAYLOAD_ENCRYPTION_KEYS is empty"):
        Keyring.parse(" , ")
    with pytest.raises(KeyringError, match="16, 24 or 32"):
        Keyring.parse("k1:" + base64.b64encode(b"short").decode())
    with pytest.raises(KeyringError, match="not `key_id:base64-key`"):
        Keyring.parse("no-colon-here")
    old, new = new_key_entry("old"), new_key_entry("new")
    ring = Keyring.parse(f"{new},{old}")
    assert ring.current == "new" and set(ring.keys) == {"new", "old"}

    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    [sealed] = await EncryptionCodec(Keyring.parse(old)).encode([plain])
    assert sealed.metadata[KEY_ID] == b"old" and b"hello" not in sealed.data
    assert await EncryptionCodec(ring).decode([sealed]) == [plain]
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(KeyringError, match="does not decrypt"):
        await EncryptionCodec(ring).decode([tampered])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID] = b"new"  # the key ID is authenticated data
    with pytest.raises(KeyringError, match="does not decrypt"):
        await EncryptionCodec(ring).decode([relabelled])
    with pytest.raises(KeyringError, match="not in PAYLOAD_ENCRYPTION_KEYS"):
        await EncryptionCodec(Keyring.parse(new)).decode([sealed])


async def test_the_service_has_no_codec_without_keys(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, 25, payload_encryption_keys=SecretStr(""))
    assert settings.missing_secrets() == [
        "PAYLOAD_ENCRYPTION_KEYS (`reportflow keygen` prints one)"
    ]
    with pytest.raises(KeyringError, match="PAYLOAD_ENCRYPTION_KEYS is empty"):
        settings.keyring()
