"""The customer master through the gateway, on real PostgreSQL and Kafka: create, concurrent edits,
the status lifecycle and a bulk import with bad rows."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.e2e.helpers import eventually, read_topic

pytestmark = pytest.mark.e2e

API = "/api/v1/customers"


async def test_create_patch_with_if_match_and_move_through_the_lifecycle(gateway: httpx.AsyncClient):
    body = {
        "name": "Acme GmbH",
        "kind": "company",
        "email": "buyer@acme.example",
        "external_ref": f"ERP-{uuid.uuid4()}",
        "segment": "smb",
        "owner": "agent-7",
        "tags": ["vip"],
        "attributes": {"plan": "pro", "monthly_charge": 49.5},
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = await gateway.post(API, json=body, headers=key)
    assert created.status_code == 201, created.text
    customer = created.json()
    assert created.headers["etag"] == '"1"'
    replay = await gateway.post(API, json=body, headers=key)  # a retried request: the same customer
    assert (replay.status_code, replay.json()["id"]) == (201, customer["id"])
    one = f"{API}/{customer['id']}"

    patched = await gateway.patch(one, json={"segment": "enterprise"}, headers={"If-Match": created.headers["etag"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["segment"], patched.headers["etag"]) == ("enterprise", '"2"')
    stale = await gateway.patch(one, json={"segment": "smb"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await gateway.patch(one, json={"segment": "smb"})).status_code == 428

    churned = await gateway.post(
        f"{one}/status", json={"status": "churned", "reason": "competitor", "churned_at": "2026-01-15"}
    )
    assert churned.status_code == 200, churned.text
    refused = await gateway.post(f"{one}/status", json={"status": "active"})
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:crm:problem:invalid_transition"
    assert "won_back" in refused.json()["detail"]
    assert (await gateway.get(one)).json()["status"] == "churned"

    # Each change reached Kafka through the outbox, without personal data.
    def is_ours(record) -> bool:
        return record.key == customer["id"].encode()

    records = await eventually(
        lambda: _events(read_topic("crm.customer.v1", match=is_ours), expected=3), what="the customer's events"
    )
    types = [r["type"] for r in records]
    assert types == ["customer.created", "customer.updated", "customer.status_changed"]
    status_changed = records[2]["data"]
    assert (status_changed["reason"], status_changed["churned_at"]) == ("competitor", "2026-01-15")
    assert all("acme.example" not in orjson.dumps(r).decode() for r in records)


async def _events(reading, expected: int) -> list[dict] | None:
    records = [orjson.loads(r.value) for r in await reading]
    return records if len(records) >= expected else None


async def test_a_bulk_import_stores_the_good_rows_and_reports_the_bad_ones(gateway: httpx.AsyncClient):
    batch = uuid.uuid4().hex[:8]
    rows = [
        {"name": "Good A", "external_ref": f"{batch}-A", "tags": [batch], "attributes": {"plan": "basic"}},
        {"name": "Bad mail", "external_ref": f"{batch}-B", "email": "nope", "tags": [batch]},
        {"name": "Good C", "external_ref": f"{batch}-C", "tags": [batch], "status": "prospect"},
        {"name": "Nested", "tags": [batch], "attributes": {"plan": {"tier": "gold"}}},
        {"name": "Good A again", "external_ref": f"{batch}-A", "tags": [batch]},
    ]
    response = await gateway.post(f"{API}/bulk", json={"rows": rows})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["existing"], report["rejected"]) == (2, 1, 2)
    assert [r["status"] for r in report["rows"]] == ["created", "rejected", "created", "rejected", "existing"]
    assert report["rows"][1]["errors"][0]["field"] == "email"
    assert report["rows"][3]["errors"][0]["field"] == "attributes.plan"
    assert report["rows"][4]["id"] == report["rows"][0]["id"]

    listed = await gateway.get(API, params={"tag": batch, "sort": "name"})
    assert listed.status_code == 200, listed.text
    assert [c["name"] for c in listed.json()["items"]] == ["Good A", "Good C"]
    assert listed.json()["total"] == 2
