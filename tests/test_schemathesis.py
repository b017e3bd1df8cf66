"""Bad input at scale: schemathesis generates requests from the OpenAPI schema of
the running app and runs all its checks (no 5xx, responses match the schema,
documented status codes and headers, schema-violating input rejected).

One check is left out: `positive_data_acceptance` expects every schema-valid
request to be accepted, but a range is also checked across fields (start after
end, over 366 days, in the future) and page tokens are signed, which JSON
Schema cannot express; those 422s are the contract, not a bug.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.tokens import create_token
from tests.conftest import MakeUser

SCHEMATHESIS = str(Path(sys.executable).parent / "st")


async def run_schemathesis(url: str, token: str, *options: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        "8",
        "--seed",
        "20261128",
        "--request-timeout",
        "10",
        "--no-color",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tempfile.gettempdir(),  # schemathesis writes a .schemathesis/ cache
    )
    async with asyncio.timeout(300):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


@pytest.mark.usefixtures("worker")
async def test_user_routes_hold_up_to_generated_input(api_url: str, make_user: MakeUser) -> None:
    user = await make_user()
    code, out = await run_schemathesis(
        api_url, user.token, "--exclude-path-regex", "^/(admin|codec)"
    )
    assert code == 0, out
    assert "Server error" not in out


@pytest.mark.usefixtures("worker")
async def test_admin_routes_hold_up_to_generated_input(
    api_url: str, app_engine: AsyncEngine
) -> None:
    token = await create_token(app_engine, admin=True)
    code, out = await run_schemathesis(api_url, token, "--include-path-regex", "^/(admin|codec)")
    assert code == 0, out
