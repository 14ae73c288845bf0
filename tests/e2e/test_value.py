"""Customer value and the value reports through the gateway on the real platform (Kafka + PostgreSQL):
interactions recorded at the interaction service reach scoring's counters; GET /customers/{id}/value
respects object-level access; a value report and a segment answer for the roles that may read them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import create_customer, eventually
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


async def _record(gateway: httpx.AsyncClient, customer_id: str, type: str, days_ago: int, **fields: Any) -> None:
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    body = {"customer_id": customer_id, "type": type, "channel": "web", "occurred_at": at, **fields}
    response = await gateway.post("/api/v1/interactions", json={**body, "external_id": f"e2e-{uuid.uuid4()}"})
    assert response.status_code == 201, response.text


def _bearer(role: str, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, sub=sub, team=[sub])}"}


async def test_value_counters_reach_scoring_and_the_reports_answer_through_the_gateway(
    gateway: httpx.AsyncClient,
) -> None:
    segment = f"e2e-value-{uuid.uuid4().hex[:8]}"
    owner = f"agent-{uuid.uuid4().hex[:8]}"
    big = (await create_customer(gateway, segment=segment, owner=owner))["id"]
    small = (await create_customer(gateway, segment=segment, owner=owner))["id"]
    await _record(gateway, big, "purchase", 20, amount="300.00", currency="EUR")
    await _record(gateway, big, "purchase", 5, amount="100.00", currency="EUR")
    await _record(gateway, big, "call", 4)
    await _record(gateway, big, "feedback", 3, category="referral", amount="50.00", currency="EUR")
    await _record(gateway, small, "purchase", 40, amount="25.00", currency="EUR")

    async def counted() -> dict[str, Any] | None:
        response = await gateway.get(f"/api/v1/customers/{big}/value")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["referral"]["referrals"] == 1 and body["historical"]["revenue"] == 400.0 else None

    value = await eventually(counted, timeout_s=60, what="scoring to count the interactions")
    assert value["historical"]["contacts"] == 1
    # default unit costs are zero and the margin 1: contribution = revenue
    assert value["historical"]["contribution"] == 400.0
    assert value["referral"]["referral_value"] == 50.0
    assert value["rfm"]["frequency"] == 2 and value["rfm"]["r"] in range(1, 6)

    summary = await eventually(
        lambda: _summary_of(gateway, segment), timeout_s=60, what="the second customer's purchase in scoring"
    )
    assert (summary["revenue"], summary["referrals"], summary["referral_value"]) == (425.0, 1, 50.0)
    assert summary["avg_contribution"] == pytest.approx(212.5)

    concentration = await gateway.get(
        "/api/v1/reports/value/concentration", params={"segment": segment, "basis": "contribution", "top": 0.5}
    )
    assert concentration.status_code == 200, concentration.text
    assert concentration.json()["top_share"] == pytest.approx(400 / 425)
    today = datetime.now(UTC).date()
    migration = await gateway.get(
        "/api/v1/reports/value/tier-migration",
        params={
            "segment": segment,
            "from": (today - timedelta(days=60)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
        },
    )
    assert migration.status_code == 200, migration.text
    # both customers were first scored in the period, without a value model: none -> none
    assert migration.json()["customers"] == 2
    rfm = await gateway.get("/api/v1/reports/value/rfm", params={"segment": segment})
    assert rfm.status_code == 200, rfm.text
    assert rfm.json()["customers"] == 2
    as_csv = await gateway.get("/api/v1/reports/value/summary", params={"segment": segment, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0].startswith("customers,revenue,cost_to_serve,contribution")

    created = await gateway.post(
        "/api/v1/segments",
        json={"name": "e2e", "filter": [{"field": "segment", "op": "eq", "value": segment}]},
    )
    assert created.status_code == 201, created.text
    listed = await gateway.get(f"/api/v1/segments/{created.json()['id']}/customers")
    assert sorted(i["customer_id"] for i in listed.json()["items"]) == sorted([big, small])
    assert listed.json().keys() == {"segment_id", "items", "total", "limit", "offset"}
    assert (listed.json()["segment_id"], listed.json()["total"]) == (created.json()["id"], 2)
    history = await gateway.get(f"/api/v1/customers/{big}/scores/history", params={"limit": 1})
    assert history.status_code == 200, history.text
    assert history.json().keys() == {"customer_id", "items", "total", "limit", "offset"}
    assert (history.json()["customer_id"], history.json()["limit"], len(history.json()["items"])) == (big, 1, 1)
    assert history.json()["total"] >= 1
    unknown = await gateway.post(
        "/api/v1/segments", json={"name": "x", "filter": [{"field": "email", "op": "eq", "value": "a"}]}
    )
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["body.filter[0].field"]

    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as client:
        mine = await client.get(f"/api/v1/customers/{big}/value", headers=_bearer("agent", owner))
        assert mine.status_code == 200, mine.text
        other = await client.get(f"/api/v1/customers/{big}/value", headers=_bearer("agent", "someone-else"))
        assert other.status_code == 404, other.text
        for role, expected in (("agent", 403), ("manager", 200), ("analyst", 200)):
            report = await client.get(
                "/api/v1/reports/value/summary", params={"segment": segment}, headers=_bearer(role, f"e2e-{role}")
            )
            assert report.status_code == expected, (role, report.text)
        for role, expected in (("agent", 403), ("manager", 403), ("analyst", 200)):
            segments = await client.get("/api/v1/segments", headers=_bearer(role, f"e2e-{role}"))
            assert segments.status_code == expected, (role, segments.text)


async def _summary_of(gateway: httpx.AsyncClient, segment: str) -> dict[str, Any] | None:
    response = await gateway.get("/api/v1/reports/value/summary", params={"segment": segment})
    assert response.status_code == 200, response.text
    [row] = response.json()["items"]
    return row if row["customers"] == 2 and row["revenue"] == 425.0 else None
