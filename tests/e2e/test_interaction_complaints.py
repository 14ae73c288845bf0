"""Complaint workflow and SLA watcher through the gateway, on real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from contracts.topics import INTERACTION
from tests.e2e.helpers import create_customer, eventually, read_topic

pytestmark = pytest.mark.e2e


async def test_a_late_complaint_is_announced_overdue_once_and_its_steps_are_published(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    opened = datetime.now(UTC) - timedelta(days=2)  # a critical complaint's SLA is 4 hours
    body = {
        "customer_id": customer["id"],
        "type": "complaint",
        "severity": "critical",
        "category": "product_quality",
        "occurred_at": opened.isoformat(),
        "external_id": f"late-{uuid.uuid4()}",
    }
    response = await gateway.post("/api/v1/interactions", json=body)
    assert response.status_code == 201, response.text
    complaint_id = response.json()["id"]

    def about(event_type: str):
        def match(record) -> bool:
            try:  # other tests put poison messages on the same topic
                event = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                return False
            return event.get("type") == event_type and event.get("data", {}).get("complaint_id") == complaint_id

        return match

    # The watcher runs at start-up and then every 30 s (INTERACTION_OVERDUE_CHECK_INTERVAL_S).
    overdue = await eventually(
        lambda: read_topic(INTERACTION, match=about("complaint.overdue")), timeout_s=45, what="complaint.overdue"
    )
    listed = (await gateway.get("/api/v1/complaints", params={"customer_id": customer["id"], "overdue": "true"})).json()
    assert [c["id"] for c in listed["items"]] == [complaint_id]
    assert listed["items"][0]["overdue_at"] is not None

    step = await gateway.post(f"/api/v1/complaints/{complaint_id}/transitions", json={"to": "acknowledged"})
    assert step.status_code == 200, step.text
    refused = await gateway.post(f"/api/v1/complaints/{complaint_id}/transitions", json={"to": "closed"})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"

    updated = await eventually(
        lambda: read_topic(INTERACTION, match=about("complaint.updated")), what="complaint.updated"
    )
    assert [orjson.loads(r.value)["data"]["status"] for r in updated] == ["acknowledged"]
    await asyncio.sleep(1)
    assert len(await read_topic(INTERACTION, match=about("complaint.overdue"))) == len(overdue) == 1
