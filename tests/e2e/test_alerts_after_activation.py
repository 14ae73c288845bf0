"""Activating a churn model over a book with long-lapsed customers, on the real platform (Kafka +
PostgreSQL): the activation's rescoring raises no alert about customers whose last purchase was in
1998 (they are left to win-back and counted), and takes nothing away from recent customers' alerts."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import service_url
from tests.e2e.helpers import eventually, metric

pytestmark = pytest.mark.e2e

LAPSERS, RECENT, CHURNED = 8, 8, 8
WIN_BACK = "crm_retention_win_back_signals_total"
HANDLED = 'crm_events_handled_total{event_type="score.updated",service="retention"}'
PUBLISHED = 'crm_events_published_total{event_type="score.updated",service="scoring"}'


def purchase(run: str, customer_id: str, k: int, at: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "type": "purchase",
        "amount": 20.0 + k,
        "currency": "USD",
        "occurred_at": at.isoformat(),
        "external_id": f"{run}-{customer_id}-p{k}",
    }


def complaint(run: str, customer_id: str, at: datetime) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "type": "complaint",
        "severity": "critical",
        "category": "delivery",
        "occurred_at": at.isoformat(),
        "external_id": f"{run}-{customer_id}-c",
    }


async def reasons_of(gateway: httpx.AsyncClient, owner: str) -> Counter[tuple[str, str]]:
    """(group, reason) of every alert of the run's customers."""
    body = (await gateway.get("/api/v1/alerts", params={"owner": owner, "limit": 200})).json()
    return Counter((a["customer_id"], a["reason"]) for a in body["items"])


async def test_activating_a_model_leaves_customers_lapsed_since_1998_to_win_back(gateway: httpx.AsyncClient):
    run = uuid.uuid4().hex[:8]
    owner = f"owner-{run}"
    now = datetime.now(UTC)
    churn_day = (now - timedelta(days=20)).date().isoformat()
    rows = [
        {"name": f"Customer {i}", "kind": "person", "external_ref": f"{run}-{i}", "owner": owner}
        for i in range(LAPSERS + RECENT + CHURNED)
    ]
    for row in rows[LAPSERS + RECENT :]:
        row.update(status="churned", churned_at=churn_day, churn_reason="competitor")
    response = await gateway.post("/api/v1/customers/bulk", json={"rows": rows}, timeout=60)
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    ids = [r["id"] for r in response.json()["rows"]]
    lapsers, recent, churned = ids[:LAPSERS], ids[LAPSERS : LAPSERS + RECENT], ids[LAPSERS + RECENT :]

    history: list[dict[str, Any]] = []
    for c in lapsers:  # CDNOW-like: a few purchases in 1997-98, nothing since
        history += [purchase(run, c, k, datetime(1998, 1 + 2 * k, 10, tzinfo=UTC)) for k in range(3)]
    for c in recent:
        history += [purchase(run, c, k, now - timedelta(days=9 - 3 * k)) for k in range(3)]
    for i, c in enumerate(churned):  # the labels: bought, complained, left
        history += [purchase(run, c, k, now - timedelta(days=60 - 10 * k)) for k in range(2)]
        history.append(complaint(run, c, now - timedelta(days=30 + i % 3)))
    history += [complaint(run, c, now - timedelta(hours=6)) for c in recent[:2]]  # live: alerts as always
    response = await gateway.post("/api/v1/interactions/bulk", json={"rows": history}, timeout=60)
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text

    async def scored() -> bool:
        for c in ids:
            if (await gateway.get(f"/api/v1/customers/{c}/scores")).json().get("scores") is None:
                return False
        return True

    await eventually(scored, timeout_s=90, what="every customer scored")
    await eventually(lambda: _live_alerts(gateway, owner, recent[:2]), timeout_s=60, what="the live complaints' alerts")
    before = await reasons_of(gateway, owner)
    assert not [key for key in before if key[0] in lapsers]  # their history raised nothing

    async with httpx.AsyncClient(timeout=10) as client:
        win_back_before = await metric(client, service_url("retention"), WIN_BACK)
        response = await gateway.post("/api/v1/models/churn/train", json={"activate": True, "folds": 3})
        assert response.status_code == 202, response.text
        try:
            job = await _finished(gateway, response.json()["id"], "training, activation and rescoring")
            assert job["status"] == "succeeded", job
            await _judge_the_activation(gateway, client, owner, ids, lapsers, before, win_back_before, job)
        finally:
            # The platform is shared by the whole run: later tests expect scores from the rules, not this model.
            response = await gateway.post("/api/v1/models/churn/deactivate")
            assert response.status_code in (200, 202), response.text
            job = await _finished(gateway, response.json()["id"], "the deactivation's rescoring")
            assert job["status"] == "succeeded", job


async def _finished(gateway: httpx.AsyncClient, job_id: str, what: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return await eventually(done, timeout_s=180, what=what)


async def _judge_the_activation(
    gateway: httpx.AsyncClient,
    client: httpx.AsyncClient,
    owner: str,
    ids: list[str],
    lapsers: list[str],
    before: Counter[tuple[str, str]],
    win_back_before: float,
    job: dict[str, Any],
) -> None:
    assert job["result"]["rescored"] >= len(ids)

    async def settled() -> bool:
        # Every lapser's rescoring was seen as win-back's, and retention handled every score published.
        if await metric(client, service_url("retention"), WIN_BACK) < win_back_before + LAPSERS:
            return False
        published = await metric(client, service_url("scoring"), PUBLISHED)
        return await metric(client, service_url("retention"), HANDLED) >= published

    await eventually(settled, timeout_s=120, what="retention to handle the activation's rescoring")
    after = await reasons_of(gateway, owner)
    print(f"alerts by reason before {sorted(Counter(r for _, r in before.elements()).items())}")
    print(f"alerts by reason after {sorted(Counter(r for _, r in after.elements()).items())}")
    # Nobody can save a customer who left in 1998: no alert, whatever the new model says of them.
    assert not [key for key in after if key[0] in lapsers]
    # The recent customers' alerts are all still there (the activation may add some: it judges them as live).
    assert set(before) <= set(after)


async def _live_alerts(gateway: httpx.AsyncClient, owner: str, customers: list[str]) -> bool:
    raised = {c for c, _ in await reasons_of(gateway, owner)}
    return set(customers) <= raised
