"""Retention reports and the suggested churn reason through the gateway, on the real platform.

Two customers go through purchases, a complaint and a churn; the retention service's read model, fed
by the customer and interaction topics, answers the suggestion, the loyalty view and the reports
(docs/reports.md, "Retention").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import create_customer, eventually
from tests.platform import GATEWAY, token

pytestmark = pytest.mark.e2e


async def record(gateway: httpx.AsyncClient, customer_id: str, **fields: Any) -> None:
    body = {"customer_id": customer_id, "external_id": f"e2e-{uuid.uuid4()}", **fields}
    response = await gateway.post("/api/v1/interactions", json=body)
    assert response.status_code == 201, response.text


async def test_complaint_to_churn_drives_the_suggestion_and_the_retention_reports(gateway: httpx.AsyncClient) -> None:
    owner = f"e2e-retain-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    days_ago = lambda n: (now - timedelta(days=n)).isoformat()  # noqa: E731
    billed = (await create_customer(gateway, owner=owner, segment="e2e-retain"))["id"]
    broken = (await create_customer(gateway, owner=owner, segment="e2e-retain"))["id"]

    for n, amount in ((5, "100.00"), (4, "50.00")):
        await record(gateway, billed, type="purchase", amount=amount, currency="EUR", occurred_at=days_ago(n))
    await record(gateway, billed, type="survey", survey="nps", score=10, category="product", occurred_at=days_ago(4))
    await record(
        gateway,
        billed,
        type="complaint",
        severity="low",
        category="billing",
        text="Invoice wrong.",
        occurred_at=days_ago(3),
    )
    await record(
        gateway,
        broken,
        type="complaint",
        severity="low",
        category="product_quality",
        text="Broke.",
        occurred_at=days_ago(3),
    )

    async def loyalty() -> dict[str, Any] | None:
        response = await gateway.get(f"/api/v1/customers/{billed}/loyalty")
        body = response.json() if response.status_code == 200 else None
        return body if body and body["orders"] == 2 and body["nps"] == 10 else None

    view = await eventually(loyalty, what="the purchases and the survey in retention's read model")
    assert (view["type"], view["attitude_high"], view["repeat_rate"]) == ("latent", True, 0.5)

    yesterday = (now - timedelta(days=1)).date().isoformat()
    for customer_id, reason in ((billed, "price"), (broken, "competitor")):
        churned = await gateway.post(
            f"/api/v1/customers/{customer_id}/status",
            json={"status": "churned", "reason": reason, "churned_at": yesterday, "note": "e2e"},
        )
        assert churned.status_code == 200, churned.text

    async def suggestion(customer_id: str, expected: str) -> dict[str, Any] | None:
        response = await gateway.get(f"/api/v1/customers/{customer_id}/churn-suggestion")
        body = response.json() if response.status_code == 200 else None
        return body if body and body["suggested_reason"] == expected else None

    first = await eventually(lambda: suggestion(billed, "price"), what="the suggested reason of the billing complaint")
    assert (first["recorded_reason"], first["matches"], first["confidence"]) == ("price", True, 1.0)
    assert [(e["kind"], e["category"]) for e in first["evidence"]] == [("complaint", "billing")]
    assert first["historical_value"] == 150.0
    second = await eventually(lambda: suggestion(broken, "product_quality"), what="the product-quality suggestion")
    assert (second["recorded_reason"], second["matches"]) == ("competitor", False)

    period = {"from": (now - timedelta(days=7)).date().isoformat(), "to": (now + timedelta(days=1)).date().isoformat()}
    query = {**period, "owner": owner}
    accuracy = await gateway.get("/api/v1/reports/retention/reason-suggestions/accuracy", params=query)
    assert accuracy.status_code == 200, accuracy.text
    body = accuracy.json()
    assert (body["churned"], body["suggested"], body["correct"], body["accuracy"]) == (2, 2, 1, 0.5)

    conversion = (await gateway.get("/api/v1/reports/retention/complaint-conversion", params=query)).json()
    assert (conversion["complainers"], conversion["churned"], conversion["conversion_rate"]) == (2, 2, 1.0)

    value = (await gateway.get("/api/v1/reports/retention/value-lost", params=query)).json()
    assert (value["overall"]["churned"], value["overall"]["historical_value_lost"]) == (2, 150.0)
    assert {r["side"]: r["churned"] for r in value["by_side"]} == {"company": 1, "customer": 1}

    satisfaction = (await gateway.get("/api/v1/reports/retention/satisfaction", params=query)).json()
    assert [(r["survey"], r["dimension"], r["nps"]) for r in satisfaction["by_dimension"]] == [
        ("nps", "product", 100.0)
    ]

    # The reports that rank and stream (window functions, the loyalty typing) answer on PostgreSQL too.
    owners = (await gateway.get("/api/v1/reports/retention/owners", params=query)).json()
    assert owners["total"] == 0  # low complaints and a promoter raise no alert
    loyalty_report = (await gateway.get("/api/v1/reports/retention/loyalty", params=query)).json()
    assert loyalty_report["customers"] == 0  # both churned: no longer customers
    traps = (await gateway.get("/api/v1/reports/retention/satisfaction-trap", params=query)).json()
    assert traps["total"] == 0
    mix = (await gateway.get("/api/v1/reports/retention/reason-mix", params={**query, "group_by": "segment"})).json()
    assert [(r["group"], r["reason"], r["churned"]) for r in mix["items"]] == [
        ("e2e-retain", "competitor", 1),
        ("e2e-retain", "price", 1),
    ]

    as_csv = await gateway.get(
        "/api/v1/reports/retention/reason-suggestions/accuracy", params={**query, "format": "csv"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines() == ["recorded,suggested,churns", "competitor,product_quality,1", "price,price,1"]

    reversed_period = await gateway.get(
        "/api/v1/reports/retention/owners", params={"from": period["to"], "to": period["from"]}
    )
    assert reversed_period.status_code == 422
    assert [e["field"] for e in reversed_period.json()["errors"]] == ["query.to"]

    async with httpx.AsyncClient(base_url=GATEWAY, timeout=10) as client:
        agent = {"Authorization": f"Bearer {token('agent', sub='e2e-someone')}"}
        refused = await client.get("/api/v1/reports/retention/owners", params=period, headers=agent)
        assert refused.status_code == 403
        hidden = await client.get(f"/api/v1/customers/{billed}/churn-suggestion", headers=agent)
        assert hidden.status_code == 404  # not their customer: like one that does not exist
        mine = {"Authorization": f"Bearer {token('agent', sub=owner)}"}
        seen = await client.get(f"/api/v1/customers/{billed}/churn-suggestion", headers=mine)
        assert seen.status_code == 200 and seen.json()["suggested_reason"] == "price"
