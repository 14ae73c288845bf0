"""The audit log on the real platform (issue 20, finding 13): who changed what, admins only, no PII.

The platform's gateway keeps it in its PostgreSQL database; the table itself is read as well as the API,
so "no PII" is checked where it is stored, not only where it is shown.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.helpers import create_customer
from tests.platform import PG_PORT, token

pytestmark = pytest.mark.e2e


def _bearer(role: str, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub)}"}


async def _entries(gateway: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await gateway.get("/api/v1/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_an_admin_sees_who_created_a_key_and_who_erased_a_customer_and_no_pii(
    gateway: httpx.AsyncClient,
) -> None:
    run = uuid.uuid4().hex[:10]
    name, email = f"Erika Mustermann {run}", f"erika.{run}@example.com"
    admin = f"sec-admin-{run}"
    headers = _bearer("admin", admin)

    created = await gateway.post(
        "/api/v1/keys", json={"name": f"erp {run}", "role": "integration"}, headers={**headers, "X-Request-ID": run}
    )
    assert created.status_code == 201, created.text
    customer = await create_customer(gateway, name=name, email=email, phone="+49 30 1234567", external_ref=run)
    erased = await gateway.delete(f"/api/v1/customers/{customer['id']}", headers=headers)
    assert erased.status_code == 202, erased.text

    entries = await _entries(gateway, actor=admin)
    by_action = {e["action"]: e for e in entries}
    key_entry, erasure = by_action["key.created"], by_action["customer.erased"]
    assert (key_entry["object_type"], key_entry["object_id"]) == ("api_key", created.json()["id"])
    assert (key_entry["status"], key_entry["actor_role"], key_entry["request_id"]) == (201, "admin", run)
    assert (erasure["object_type"], erasure["object_id"], erasure["status"]) == ("customer", customer["id"], 202)
    assert erasure["request_id"] == erased.headers["x-request-id"]

    # Filters by object and action find the same rows.
    assert [e["id"] for e in await _entries(gateway, object=customer["id"], action="customer.erased")] == [
        erasure["id"]
    ]
    # No PII: neither in what the API shows nor in the table.
    everything = (await gateway.get("/api/v1/audit", params={"limit": 200})).text
    connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/gateway")
    try:
        stored = str([tuple(r) for r in await connection.fetch("SELECT * FROM audit_log")])
    finally:
        await connection.close()
    for secret in (name, email, "1234567", f"erp {run}", created.json()["key"]):
        assert secret not in everything
        assert secret not in stored


async def test_a_denied_attempt_is_recorded_with_its_caller(gateway: httpx.AsyncClient) -> None:
    agent = f"sec-agent-{uuid.uuid4().hex[:10]}"
    as_agent = _bearer("agent", agent)
    response = await gateway.post("/api/v1/keys", json={"name": "mine", "role": "admin"}, headers=as_agent)
    assert response.status_code == 403

    [entry] = await _entries(gateway, actor=agent)
    assert (entry["action"], entry["status"], entry["actor_role"]) == ("key.created", 403, "agent")


@pytest.mark.parametrize("role", ["agent", "manager", "analyst", "integration"])
async def test_only_admins_read_the_audit_log(gateway: httpx.AsyncClient, role: str) -> None:
    response = await gateway.get("/api/v1/audit", headers=_bearer(role, f"sec-{role}"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"action": "nothing.like.this"}, "query.action"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "query.until"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_a_bad_audit_filter_is_a_422_naming_it(gateway: httpx.AsyncClient, params: dict, field: str) -> None:
    response = await gateway.get("/api/v1/audit", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(field in e["field"] for e in response.json()["errors"])


async def test_the_audit_log_pages_with_a_cursor_newest_first(gateway: httpx.AsyncClient) -> None:
    admin = f"sec-pager-{uuid.uuid4().hex[:10]}"
    for n in range(3):
        response = await gateway.post(
            "/api/v1/keys", json={"name": f"k{n}", "role": "integration"}, headers=_bearer("admin", admin)
        )
        assert response.status_code == 201
    seen: list[int] = []
    params: dict[str, Any] = {"actor": admin, "limit": 2}
    while True:
        page = (await gateway.get("/api/v1/audit", params=params)).json()
        seen += [e["id"] for e in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
