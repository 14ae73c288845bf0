"""Issue 20, finding 13 on the real platform (PostgreSQL): a UTF-16 body with a NUL is a 4xx naming
the body, never a 500, and no log of the run holds its payload."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from tests.platform import log_dir

pytestmark = pytest.mark.e2e

SECRET = "Ottoline Vexhammer-Quill"


@pytest.mark.parametrize("path", ["/api/v1/customers", "/api/v1/interactions", "/api/v1/keys"])
async def test_a_utf16_body_with_a_nul_is_a_4xx_naming_the_body_and_stays_out_of_the_logs(
    gateway: httpx.AsyncClient, path: str
) -> None:
    document = {"name": SECRET + "\x00", "kind": "person", "owner": "e2e-admin", "role": "integration"}
    body = orjson.dumps(document).decode().encode("utf-16")
    response = await gateway.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert "body" in {e["field"] for e in response.json().get("errors", [])}
    assert SECRET not in response.text
    await asyncio.sleep(0.5)  # let the processes flush their log lines
    for log in log_dir().glob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log.name
