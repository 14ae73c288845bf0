"""Onboarding a company's history through the gateway, on the real platform (Kafka + PostgreSQL):
order-free imports, churn history as training labels, history that raises no alerts, one work item
per customer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import service_url
from tests.e2e.helpers import alerts_for, eventually, metric

pytestmark = pytest.mark.e2e


def customer_row(run: str, i: int, **fields: Any) -> dict[str, Any]:
    return {"name": f"Customer {i}", "kind": "person", "external_ref": f"{run}-{i}", "owner": f"owner-{run}", **fields}


async def bulk_customers(gateway: httpx.AsyncClient, rows: list[dict[str, Any]]) -> list[str]:
    response = await gateway.post("/api/v1/customers/bulk", json={"rows": rows}, timeout=60)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["rejected"] == 0, [r for r in report["rows"] if r["status"] == "rejected"][:3]
    return [r["id"] for r in report["rows"]]


async def test_customers_and_their_history_posted_back_to_back_are_all_accepted(gateway: httpx.AsyncClient):
    run = uuid.uuid4().hex[:8]
    ids = await bulk_customers(gateway, [customer_row(run, i) for i in range(300)])
    # Straight after: the interaction service has not heard of these customers from Kafka yet.
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        {
            "customer_id": ids[i % 300],
            "type": "purchase",
            "amount": "20.00",
            "currency": "EUR",
            "occurred_at": (start + timedelta(days=i % 200)).isoformat(),
            "external_id": f"{run}-p{i}",
        }
        for i in range(900)
    ]
    response = await gateway.post("/api/v1/interactions/bulk", json={"rows": rows}, timeout=60)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["rejected"]) == (900, 0), [r for r in report["rows"] if r["status"] != "created"][
        :3
    ]

    # Every consumer keeps up whatever the order: each customer gets its scores with all its purchases.
    async def scored(customer_id: str) -> dict[str, Any] | None:
        body = (await gateway.get(f"/api/v1/customers/{customer_id}/scores")).json()
        features = body.get("features") or {}
        return body if body.get("scores") and features.get("purchases") == 3 else None

    for customer_id in ids[::30]:
        await eventually(lambda c=customer_id: scored(c), timeout_s=60, what=f"scores of {customer_id}")


async def test_a_customer_never_created_is_rejected_for_good(gateway: httpx.AsyncClient):
    row = {"customer_id": str(uuid.uuid4()), "type": "call"}
    report = (await gateway.post("/api/v1/interactions/bulk", json={"rows": [row]})).json()
    [result] = report["rows"]
    assert (result["status"], result["retryable"]) == ("rejected", False)
    assert result["errors"] == [{"field": "customer_id", "message": "unknown customer"}]


async def _finished(gateway: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
    return job if job["status"] in ("succeeded", "failed") else None


async def test_churn_imported_and_changed_in_bulk_trains_a_churn_model(gateway: httpx.AsyncClient):
    run = uuid.uuid4().hex[:8]
    churn_day = (datetime.now(UTC) - timedelta(days=60)).date().isoformat()
    rows = []
    for i in range(60):
        monthly = i % 2 == 0
        row = customer_row(run, i, attributes={"contract": "monthly" if monthly else "two_year", "seats": i % 7 + 1})
        if monthly and i % 4 == 0:  # imported as already churned, with its date and reason
            row.update(status="churned", churned_at=churn_day, churn_reason="price")
        rows.append(row)
    ids = await bulk_customers(gateway, rows)
    imported_churned = {ids[i] for i in range(60) if i % 4 == 0}
    # The rest of the monthly customers churned too: their statuses in one bulk request.
    changes = [
        {"customer_id": ids[i], "status": "churned", "reason": "competitor", "churned_at": churn_day}
        for i in range(60)
        if i % 2 == 0 and i % 4 != 0
    ]
    changes.append({"customer_id": ids[1], "status": "prospect"})  # active -> prospect: refused
    headers = {"Idempotency-Key": f"statuses-{run}"}
    response = await gateway.post("/api/v1/customers/status/bulk", json={"rows": changes}, headers=headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["changed"], report["rejected"]) == (15, 1)
    assert report["rows"][-1]["code"] == "invalid_transition"
    replay = await gateway.post("/api/v1/customers/status/bulk", json={"rows": changes}, headers=headers)
    assert replay.json() == report
    churned = imported_churned | {c["customer_id"] for c in changes[:-1]}
    assert len(churned) == 30

    async def labelled() -> bool:
        for customer_id in ids:
            body = (await gateway.get(f"/api/v1/customers/{customer_id}/scores")).json()
            status = (body.get("features") or {}).get("status")
            if status != ("churned" if customer_id in churned else "active") or body.get("scores") is None:
                return False
        return True

    await eventually(labelled, timeout_s=60, what="every customer scored with its status in scoring")

    response = await gateway.post("/api/v1/models/churn/train", json={"activate": False, "folds": 3})
    assert response.status_code == 202, response.text
    job = await eventually(lambda: _finished(gateway, response.json()["id"]), timeout_s=120, what="training")
    assert job["status"] == "succeeded", job
    used = job["result"]["data"]["used"]
    # Customers without interactions are examples by their attributes; the imported churns are labels.
    assert used["churned"] >= 30 and used["active"] >= 30
    assert job["result"]["data"]["from_profile"] >= 60
    metrics = job["result"]["metrics"]
    assert "attr.contract" in metrics["features"]["categorical"]
    assert {"roc_auc", "brier"} <= set(metrics["baseline_logistic"]) and {"roc_auc"} <= set(metrics["model"])


async def _history_signals(client: httpx.AsyncClient) -> float:
    return await metric(client, service_url("retention"), "crm_retention_history_signals_total")


async def test_history_raises_no_alert_not_even_when_evaluated_and_an_agent_sees_one_item_per_customer(
    gateway: httpx.AsyncClient,
):
    run = uuid.uuid4().hex[:8]
    old_id, live_id = await bulk_customers(gateway, [customer_row(run, 0), customer_row(run, 1)])
    long_ago = datetime.now(UTC) - timedelta(days=700)

    def complaint(customer_id: str, k: int, at: datetime) -> dict[str, Any]:
        return {
            "customer_id": customer_id,
            "type": "complaint",
            "severity": "critical",
            "category": "delivery",
            "occurred_at": (at + timedelta(hours=k)).isoformat(),
            "external_id": f"{run}-{customer_id}-{k}",
        }

    async with httpx.AsyncClient(timeout=10) as client:
        before = await _history_signals(client)
        old = [complaint(old_id, k, long_ago) for k in range(4)]
        assert (await gateway.post("/api/v1/interactions/bulk", json={"rows": old})).json()["created"] == 4

        async def grew() -> bool:
            # 4 complaints and their 4 rescorings, at least, counted as history by retention.
            return await _history_signals(client) >= before + 8

        await eventually(grew, timeout_s=60, what="retention to see the history")
    assert await alerts_for(gateway, old_id) == []

    live = [complaint(live_id, k, datetime.now(UTC) - timedelta(hours=5)) for k in range(4)]
    assert (await gateway.post("/api/v1/interactions/bulk", json={"rows": live})).json()["created"] == 4

    async def several_reasons() -> list[dict[str, Any]] | None:
        items = (await gateway.get("/api/v1/work-items", params={"owner": f"owner-{run}"})).json()["items"]
        return items if items and len(items[0]["reasons"]) >= 2 else None

    items = await eventually(several_reasons, timeout_s=60, what="the live customer's alerts")
    # One item for the customer, listing every alert underneath; the history customer has none.
    assert [i["customer_id"] for i in items] == [live_id]
    reasons = {r["reason"] for r in items[0]["reasons"]}
    assert len(reasons) == len(items[0]["reasons"]) == len(await alerts_for(gateway, live_id))
    assert "severe_complaint" in reasons

    # After the backfill: the rules judge each current customer once on its current state; a customer whose
    # own latest event lies beyond the horizon (700 days) is left to win-back and counted, not alerted.
    after, win_back = "", 0
    while True:
        response = await gateway.post("/api/v1/alerts/evaluate", params={"after": after, "limit": 100}, timeout=60)
        assert response.status_code == 200, response.text
        page = response.json()
        win_back += page["left_to_win_back"]
        if page["done"]:
            break
        after = page["next_after"]
    assert win_back >= 1 and await alerts_for(gateway, old_id) == []
    items = (await gateway.get("/api/v1/work-items", params={"owner": f"owner-{run}"})).json()
    assert [i["customer_id"] for i in items["items"]] == [live_id] and items["total"] == 1
