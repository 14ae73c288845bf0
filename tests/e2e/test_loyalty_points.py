"""Loyalty points end to end on real Kafka and PostgreSQL (docs/loyalty-points.md).

An ERP earn event on erp.loyalty.v1 reaches the balance read through the gateway, a resent event is
booked once, a redemption over the balance is refused, the 360 view shows the balance and the tier, and
an event naming an unknown customer reference is dead-lettered with the reason.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from contracts.erp import ErpPointsEarned
from contracts.topics import ERP_LOYALTY, dead_letter
from servicekit.events.envelope import CloudEvent
from tests.e2e.conftest import service_url
from tests.e2e.helpers import create_customer, eventually, metric, produce, read_topic

pytestmark = pytest.mark.e2e
EARNED_HANDLED = 'crm_events_handled_total{event_type="erp.points.earned",service="customer"}'


async def _handled() -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        return await metric(client, service_url("customer"), EARNED_HANDLED)


async def test_erp_points_reach_the_balance_once_and_the_360_view_and_refusals_hold(gateway: httpx.AsyncClient):
    ref = f"ERP-LOYAL-{uuid.uuid4().hex[:8]}"
    customer = await create_customer(gateway, external_ref=ref)
    earned = ErpPointsEarned(
        customer_ref=ref,
        document_id=f"SO-{uuid.uuid4().hex[:8]}",
        points=300,
        reason="purchase",
        occurred_at=datetime.now(UTC),
    )
    before = await _handled()
    # The same document twice, as an ERP resending it would (two envelopes, one document id).
    await produce(
        ERP_LOYALTY,
        [(ref.encode(), CloudEvent.wrap(earned, source="/erp/e2e").to_json()) for _ in range(2)],
    )

    async def both_handled() -> bool:
        return await _handled() >= before + 2

    await eventually(both_handled, what="both deliveries of the earn event handled")
    points = (await gateway.get(f"/api/v1/customers/{customer['id']}/points")).json()
    assert (points["balance"], points["lifetime_points"], points["total"]) == (300, 300, 1)
    [entry] = points["items"]
    assert (entry["kind"], entry["source"], entry["source_ref"]) == ("earn", "erp", earned.document_id)
    assert points["tier"]["code"] == "member"

    refused = await gateway.post(
        f"/api/v1/customers/{customer['id']}/points",
        json={"kind": "redeem", "amount": 301, "source": "erp", "source_ref": f"RW-{uuid.uuid4().hex[:8]}"},
    )
    assert refused.status_code == 409, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["amount"]
    redeemed = await gateway.post(
        f"/api/v1/customers/{customer['id']}/points",
        json={"kind": "redeem", "amount": 100, "source": "erp", "source_ref": f"RW-{uuid.uuid4().hex[:8]}"},
    )
    assert redeemed.status_code == 201 and redeemed.json()["balance"] == 200

    view = (await gateway.get(f"/api/v1/customers/{customer['id']}/360")).json()
    assert view["points"]["balance"] == 200 and view["points"]["tier"]["code"] == "member"
    assert "points" not in view["unavailable"] and "points" not in view["omitted"]

    # The tier reached is published with codes only: no ERP reference.
    [tier_event] = await eventually(
        lambda: read_topic(
            "crm.customer.v1",
            match=lambda r: r.key == customer["id"].encode() and b"loyalty.tier_changed" in r.value,
        ),
        what="loyalty.tier_changed",
    )
    assert ref.encode() not in tier_event.value
    assert orjson.loads(tier_event.value)["data"]["tier"] == "member"

    unknown = f"ERP-NOBODY-{uuid.uuid4().hex[:8]}"
    stray = earned.model_copy(update={"customer_ref": unknown, "document_id": f"SO-{uuid.uuid4().hex[:8]}"})
    await produce(ERP_LOYALTY, [(unknown.encode(), CloudEvent.wrap(stray, source="/erp/e2e").to_json())])
    [dead] = await eventually(
        lambda: read_topic(dead_letter(ERP_LOYALTY), match=lambda r: r.key == unknown.encode()),
        what="the unknown reference dead-lettered",
    )
    reason = dict(dead.headers)["dlq.reason"]
    assert b"no customer has" in reason and unknown.encode() not in reason
