"""Churn history as training labels on the real platform (Kafka + PostgreSQL, through the gateway): the same
generated book imported twice, once with its churns carried on the customers and once churned afterwards
by status changes, each trained on its own segment, gives the same examples and the same reported AUC."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from cli.generate import AS_OF, subscriptions
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.e2e

CUSTOMERS = 300
# Every generated event happens on or before AS_OF: the same cutoff for both books leaves out nothing the
# platform itself adds at import time (its own clock differs between the two imports).
CUTOFF = datetime.combine(AS_OF + timedelta(days=1), time(), tzinfo=UTC)


async def post_rows(gateway: httpx.AsyncClient, path: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), 2000):
        response = await gateway.post(path, json={"rows": rows[start : start + 2000]}, timeout=120)
        assert response.status_code == 200, response.text
        report = response.json()["rows"]
        refused = [r for r in report if r["status"] == "rejected"]
        assert not refused, refused[:3]
        out.extend(report)
    return out


async def import_book(
    gateway: httpx.AsyncClient, segment: str, *, churned_on_import: bool
) -> tuple[int, list[dict[str, Any]]]:
    """The generated book under `segment`; returns its purchases and its churns as status changes."""
    book = list(subscriptions(CUSTOMERS, seed=7, as_of=AS_OF))
    customers = []
    for customer, _ in book:
        ref = f"{segment}-{customer.ref}"
        row: dict[str, Any] = {"name": f"Subscriber {customer.ref}", "kind": "person", "segment": segment,
                               "external_ref": ref, "attributes": customer.attributes}  # fmt: skip
        if churned_on_import and customer.churned_at is not None:
            row.update(status="churned", churned_at=customer.churned_at.isoformat(), churn_reason=customer.reason)
        customers.append(row)
    ids = [r["id"] for r in await post_rows(gateway, "/api/v1/customers/bulk", customers)]

    history: list[dict[str, Any]] = []
    purchases = 0
    for customer_id, (_, rows) in zip(ids, book, strict=True):
        # A customer's purchases go last: once scoring has every purchase, it has the rest of the history
        # (one customer's events keep their order on its partition).
        for row in sorted(rows, key=lambda r: r["type"] == "purchase"):
            item = {k: v for k, v in row.items() if k != "customer_ref" and v is not None}
            item.update(customer_id=customer_id, external_id=f"{segment}-{row['external_id']}")
            history.append(item)
            purchases += row["type"] == "purchase"
    await post_rows(gateway, "/api/v1/interactions/bulk", history)

    churns = [
        {"customer_id": customer_id, "status": "churned", "reason": customer.reason,
         "churned_at": customer.churned_at.isoformat()}
        for customer_id, (customer, _) in zip(ids, book, strict=True)
        if customer.churned_at is not None
    ]  # fmt: skip
    return purchases, churns


async def churn_live(gateway: httpx.AsyncClient, churns: list[dict[str, Any]]) -> None:
    # A 503 (with Retry-After) asks the caller to send the same request again, as crm import does.
    for _ in range(5):
        response = await gateway.post("/api/v1/customers/status/bulk", json={"rows": churns}, timeout=120)
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    assert response.status_code == 200 and response.json()["changed"] == len(churns), response.text


async def in_scoring(gateway: httpx.AsyncClient, segment: str, purchases: int, churned: int) -> bool:
    held = (await gateway.get("/api/v1/models/value/purchases", params={"segment": segment})).json()
    counted = await gateway.get("/api/v1/scores", params={"segment": segment, "status": "churned", "limit": 1})
    everyone = await gateway.get("/api/v1/scores", params={"segment": segment, "limit": 1})
    return (held["purchases"], counted.json()["total"], everyone.json()["total"]) == (purchases, churned, CUSTOMERS)


async def train(gateway: httpx.AsyncClient, segment: str) -> dict[str, Any]:
    body = {"segment": segment, "activate": False, "cutoff": CUTOFF.isoformat(), "folds": 3}
    response = await gateway.post("/api/v1/models/churn/train", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    async def finished() -> dict[str, Any] | None:
        job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] in ("succeeded", "failed") else None

    # Generous: on the shared 2-core machine a training job waits its turn for CPU with everything else.
    job = await eventually(finished, timeout_s=600, what=f"training on {segment}")
    assert job["status"] == "succeeded", job
    return job["result"]


async def test_a_book_churned_at_import_trains_a_model_as_good_as_the_same_book_churned_live(
    gateway: httpx.AsyncClient,
):
    run = uuid.uuid4().hex[:8]
    imported, live = f"imported-{run}", f"live-{run}"
    purchases, churns = await import_book(gateway, imported, churned_on_import=True)
    purchases_live, churns_live = await import_book(gateway, live, churned_on_import=False)
    assert (purchases, len(churns)) == (purchases_live, len(churns_live))
    await eventually(
        lambda: in_scoring(gateway, live, purchases, 0), timeout_s=120, what="scoring to hold the live book's history"
    )
    # The statuses after the history, as an operator imports them.
    await churn_live(gateway, churns_live)
    for segment in (imported, live):
        await eventually(
            lambda s=segment: in_scoring(gateway, s, purchases, len(churns)),
            timeout_s=120,
            what=f"scoring to hold {segment}'s history and churns",
        )
    counts = {segment: (purchases, len(churns)) for segment in (imported, live)}

    results = {segment: await train(gateway, segment) for segment in (imported, live)}

    # Only each book's customers, whatever else the shared store holds; the same examples either way.
    for segment, result in results.items():
        data = result["data"]
        assert data["audience"]["segment"] == segment and data["audience"]["customers_outside"] >= CUSTOMERS
        assert data["used"] == {"churned": counts[segment][1], "active": CUSTOMERS - counts[segment][1]}, data
    assert results[imported]["data"] == {**results[live]["data"], "audience": results[imported]["data"]["audience"]}
    a, b = (results[s]["metrics"]["model"]["roc_auc"] for s in (imported, live))
    # The figures, for a report (pytest -rP shows them).
    print({s: (r["data"]["used"], r["metrics"]["model"]["roc_auc"], r["metrics"]["baseline_logistic"]["roc_auc"])
           for s, r in results.items()})  # fmt: skip
    assert a > 0.6 and abs(a - b) <= 0.01, (a, b)
    base_a, base_b = (results[s]["metrics"]["baseline_logistic"]["roc_auc"] for s in (imported, live))
    assert abs(base_a - base_b) <= 0.01, (base_a, base_b)
