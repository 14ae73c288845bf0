"""ERP/SCM events on real Kafka: parked until their customer exists, applied once, invalid ones dead-lettered."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from contracts.erp import ErpOrderPlaced, ScmShipmentLost
from contracts.topics import ERP_ORDERS, SCM_SHIPMENTS, dead_letter
from servicekit.events.envelope import CloudEvent, EventData
from tests.e2e.conftest import token
from tests.e2e.helpers import create_customer, eventually, produce, read_topic

pytestmark = pytest.mark.e2e


def envelope(data: EventData) -> tuple[bytes, bytes]:
    event = CloudEvent.wrap(data, source="/erp/e2e")
    return data.subject().encode(), event.to_json()


def order(ref: str, order_id: str, amount: str = "49.90") -> ErpOrderPlaced:
    return ErpOrderPlaced(
        order_id=order_id, customer_ref=ref, amount=amount, currency="EUR", quantity=1, placed_at=datetime.now(UTC)
    )


async def parked_for(gateway: httpx.AsyncClient, ref: str) -> list[dict]:
    # Through the public API, as the ERP integration that sent the events reads them.
    erp = {"Authorization": f"Bearer {token('integration', 'erp-e2e')}"}
    response = await gateway.get("/api/v1/integrations/parked", params={"customer_ref": ref}, headers=erp)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def timeline(gateway: httpx.AsyncClient, customer_id: str) -> list[dict]:
    response = await gateway.get(f"/api/v1/customers/{customer_id}/interactions")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_an_order_for_an_unknown_customer_is_parked_then_applied_once_when_the_customer_appears(
    gateway: httpx.AsyncClient,
):
    ref = f"ERP-{uuid.uuid4().hex[:10]}"
    await produce(ERP_ORDERS, [envelope(order(ref, f"{ref}-O1"))])

    [parked] = await eventually(lambda: parked_for(gateway, ref), what="the order to be parked")
    assert (parked["event_type"], parked["customer_ref"]) == ("erp.order.placed", ref)

    customer = await create_customer(gateway, external_ref=ref)

    async def purchases() -> list[dict]:
        return [i for i in await timeline(gateway, customer["id"]) if i["type"] == "purchase"]

    [purchase] = await eventually(purchases, what="the parked order in the timeline")
    assert (purchase["order_id"], purchase["amount"], purchase["currency"]) == (f"{ref}-O1", "49.90", "EUR")
    assert purchase["external_id"] == f"erp-order:{ref}-O1"
    assert await parked_for(gateway, ref) == []

    # The same order again (a new event id, as a resending ERP does), then a second order. Same key,
    # same partition: once the second is in the timeline, the repeat has been handled too.
    await produce(ERP_ORDERS, [envelope(order(ref, f"{ref}-O1")), envelope(order(ref, f"{ref}-O2", "5.00"))])

    async def two_purchases() -> list[dict] | None:
        found = await purchases()
        return found if len(found) >= 2 else None

    found = await eventually(two_purchases, what="the second order")
    await asyncio.sleep(0.5)
    found = await purchases()
    assert sorted(p["order_id"] for p in found) == [f"{ref}-O1", f"{ref}-O2"]


async def test_a_lost_shipment_becomes_a_high_delivery_complaint(gateway: httpx.AsyncClient):
    ref = f"ERP-{uuid.uuid4().hex[:10]}"
    customer = await create_customer(gateway, external_ref=ref)
    lost = ScmShipmentLost(shipment_id=f"{ref}-S1", customer_ref=ref, reported_at=datetime.now(UTC))

    async def complaints() -> list[dict]:
        response = await gateway.get("/api/v1/complaints", params={"customer_id": customer["id"]})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    # The customer may not have reached the interaction service's replica yet: then it is parked first.
    await produce(SCM_SHIPMENTS, [envelope(lost)])
    [complaint] = await eventually(complaints, what="the delivery complaint")
    assert (complaint["severity"], complaint["category"], complaint["complaint_status"]) == ("high", "delivery", "open")


async def test_an_invalid_erp_event_lands_in_the_dead_letter_topic_with_the_validation_error(
    gateway: httpx.AsyncClient,
):
    ref = f"ERP-{uuid.uuid4().hex[:10]}"
    bad = CloudEvent(
        source="/erp/e2e",
        type="erp.order.placed",
        subject=ref,
        data={"order_id": "O-bad", "customer_ref": ref, "amount": "-5", "currency": "EUR", "placed_at": "2026-01-01"},
    )

    async def dead_lettered() -> list:
        return await read_topic(dead_letter(ERP_ORDERS), match=lambda r: r.key == ref.encode())

    await produce(ERP_ORDERS, [(ref.encode(), bad.to_json())])
    [record] = await eventually(dead_lettered, what="the dead letter")
    headers = {k: v.decode() for k, v in record.headers}
    assert "amount" in headers["dlq.reason"] and "does not match its contract" in headers["dlq.reason"]
    assert headers["dlq.consumer"] == "interaction"
    assert record.value == bad.to_json()
    assert await parked_for(gateway, ref) == []
