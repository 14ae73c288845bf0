"""Issue 20, finding 13: a UTF-16 body smuggling NULs past the NUL check is a 422 naming the body,
and neither the answer nor the logs carry the payload."""

import logging

import orjson
import pytest

from tests.unit.customer.conftest import Api

SECRET = "Zebulon Quixotic-Pemberton"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_utf16_body_with_a_nul_is_a_422_naming_the_body_and_nothing_logs_it(
    api: Api, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    text = orjson.dumps({"name": SECRET + "\x00", "kind": "person", "owner": "agent-1", "email": "z@q.example"})
    caplog.set_level(logging.DEBUG)
    response = await api.client.post(
        "/customers", content=text.decode().encode(encoding), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["body"]
    assert SECRET not in response.text
    assert SECRET not in caplog.text
    assert (await api.client.get("/customers")).json()["total"] == 0  # nothing half-written
