"""Reports through the gateway on real PostgreSQL: churn reasons and the churn situation, JSON and CSV,
for the roles that may read them (docs/reports.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.helpers import create_customer, eventually, post_complaint
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


async def test_churn_reports_through_the_gateway_count_what_was_recorded(gateway: httpx.AsyncClient) -> None:
    segment = f"e2e-reports-{uuid.uuid4()}"
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    ids = []
    for name in ("stays", "moves", "leaves"):
        created = await gateway.post("/api/v1/customers", json={"name": name, "segment": segment})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for customer_id, reason in ((ids[1], "relocation"), (ids[2], "competitor")):
        churned = await gateway.post(
            f"/api/v1/customers/{customer_id}/status",
            json={"status": "churned", "reason": reason, "churned_at": yesterday, "note": "e2e"},
        )
        assert churned.status_code == 200, churned.text
    period = {"from": (today - timedelta(days=7)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    query = {**period, "segment": segment}

    reasons = await gateway.get("/api/v1/reports/customers/churn-reasons", params=query)
    assert reasons.status_code == 200, reasons.text
    body = reasons.json()
    assert body["churned"] == 2
    assert [(r["side"], r["churned"]) for r in body["by_side"]] == [("customer", 2)]
    assert sorted((r["voluntary"], r["churned"]) for r in body["by_voluntary"]) == [(False, 1), (True, 1)]

    situation = await gateway.get("/api/v1/reports/customers/churn", params=query)
    assert situation.status_code == 200, situation.text
    [row] = situation.json()["items"]
    assert (row["customers_at_start"], row["new"], row["lost"], row["customers_at_end"]) == (0, 3, 2, 1)
    assert row["churn_rate"] is None  # no customers at the start: a rate of nothing is unknown

    as_csv = await gateway.get("/api/v1/reports/customers/churn-reasons", params=query, headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0] == "reason,side,voluntary,churned,share"
    assert len(as_csv.text.splitlines()) == 3

    reversed_period = await gateway.get(
        "/api/v1/reports/customers/churn", params={"from": period["to"], "to": period["from"]}
    )
    assert reversed_period.status_code == 422
    assert [e["field"] for e in reversed_period.json()["errors"]] == ["query.to"]

    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as client:
        for role, expected in (("agent", 403), ("manager", 200), ("analyst", 200)):
            answer = await client.get(
                "/api/v1/reports/customers/churn",
                params=query,
                headers={"Authorization": f"Bearer {token(role, sub=f'e2e-{role}', team=['e2e-{role}'])}"},
            )
            assert answer.status_code == expected, (role, answer.text)


async def test_customer_reports_filter_and_group_by_the_account_managed_tier(gateway: httpx.AsyncClient) -> None:
    """The tier filter's SQL on PostgreSQL: the managed tier from the `tier` attribute (any case), else the
    scored one (none here: e2e customers have no value model), combined with the segment filter."""
    segment = f"e2e-tier-{uuid.uuid4()}"
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    ids = []
    for attributes, reason in (({"tier": "Gold"}, "competitor"), ({}, "relocation")):
        created = await gateway.post(
            "/api/v1/customers", json={"name": "tiered", "segment": segment, "attributes": attributes}
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        churned = await gateway.post(
            f"/api/v1/customers/{ids[-1]}/status",
            json={"status": "churned", "reason": reason, "churned_at": yesterday},
        )
        assert churned.status_code == 200, churned.text
    period = {"from": (today - timedelta(days=7)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    gold = {**period, "segment": segment, "tier": "gold"}

    reasons = await gateway.get("/api/v1/reports/customers/churn-reasons", params=gold)
    assert reasons.status_code == 200, reasons.text
    assert [(r["reason"], r["churned"]) for r in reasons.json()["by_reason"]] == [("competitor", 1)]
    mix = await gateway.get(
        "/api/v1/reports/customers/churn-reasons", params={**period, "segment": segment, "group_by": "tier"}
    )
    assert mix.status_code == 200, mix.text
    assert [(m["group"], m["reason"], m["share_of_group"]) for m in mix.json()["mix"]] == [
        ("gold", "competitor", 1.0),
        (None, "relocation", 1.0),
    ]
    situation = await gateway.get("/api/v1/reports/customers/churn", params=gold)
    [row] = situation.json()["items"]
    assert (row["new"], row["lost"], row["customers_at_end"]) == (1, 1, 0)
    [won] = (await gateway.get("/api/v1/reports/customers/win-back", params=gold)).json()["items"]
    assert (won["churned"], won["won_back"]) == (1, 0)
    cohorts = await gateway.get("/api/v1/reports/customers/cohorts", params={**gold, "tier": "iron"})
    assert cohorts.status_code == 200 and cohorts.json()["points"] == []
    bad = await gateway.get("/api/v1/reports/customers/cohorts", params={**period, "tier": "diamond"})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.tier[0]"]


async def test_complaint_analytics_filter_by_the_segment_and_tier_the_replica_took_from_events(
    gateway: httpx.AsyncClient,
) -> None:
    """The interaction service's replica keeps each customer's segment and account-managed tier from the
    customer events (the migration ran on PostgreSQL); the complaint report filters by them."""
    segment = f"e2e-complaints-{uuid.uuid4()}"
    gold = await create_customer(gateway, segment=segment, attributes={"tier": "gold"})
    plain = await create_customer(gateway, segment=segment)
    for customer in (gold, plain, gold):
        await post_complaint(gateway, customer["id"])
    today = datetime.now(UTC).date()
    period = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}

    async def opened(**filters: str) -> int | None:
        answer = await gateway.get("/api/v1/reports/complaints", params={**period, **filters})
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        return items[0]["opened"] if items else None

    async def both_in_segment() -> bool:
        return await opened(segment=segment) == 3 and await opened(segment=segment, tier="gold") == 2

    await eventually(both_in_segment, what="the replica's segment and tier")
    [row] = (
        await gateway.get("/api/v1/reports/complaints", params={**period, "segment": segment, "tier": "gold"})
    ).json()["items"]
    assert (row["complainers"], row["repeat_complainers"]) == (1, 1)
    assert await opened(segment=segment, tier="iron") is None
    bad = await gateway.get("/api/v1/reports/complaints", params={**period, "tier": "diamond"})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["query.tier[0]"]
