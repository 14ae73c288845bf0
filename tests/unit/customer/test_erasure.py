"""Erasure on the customer side: personal data gone, events emitted, receipts from every service."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from contracts.erasure import ErasureConfirmed
from servicekit.events.envelope import CloudEvent, Received
from servicekit.inbox import PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.customer.customers.models import CustomerAttribute, CustomerTag, IdempotencyKey
from services.customer.erasure.handlers import on_erasure_confirmed
from services.customer.status.models import StatusChange

PERSONAL = {
    "name": "Mia Muster",
    "kind": "person",
    "email": "mia@example.com",
    "phone": "+41 44 000",
    "contacts": [{"kind": "address", "value": "Seestr. 5, Zürich"}],
    "external_ref": "ERP-77",
    "segment": "consumer",
    "owner": "agent-3",
    "tags": ["vip"],
    "attributes": {"plan": "pro", "birthday": "1990-02-01"},
}


def confirmed(customer_id: str, service: str, at: datetime, event_id: str) -> Received[ErasureConfirmed]:
    data = ErasureConfirmed(customer_id=customer_id, service=service, erased_at=at, summary=f"{service} erased")
    envelope = CloudEvent.wrap(data, source=f"/crm/{service}")
    envelope.id = event_id
    return Received(envelope=envelope, data=data)


async def _erased_customer(api) -> dict:
    response = await api.client.post("/customers", json=PERSONAL, headers={"Idempotency-Key": "k-1"})
    customer = response.json()
    await api.client.post(
        f"/customers/{customer['id']}/status",
        json={"status": "churned", "reason": "relocation", "churned_at": "2026-01-01", "note": "moved to Mia's mum"},
    )
    erased = await api.client.delete(f"/customers/{customer['id']}")
    assert erased.status_code == 202, erased.text
    return customer


async def test_erasure_removes_personal_data_and_keeps_the_anonymous_classification(api):
    customer = await _erased_customer(api)
    body = (await api.client.get(f"/customers/{customer['id']}")).json()
    assert body["name"] == "erased"
    assert (body["email"], body["phone"], body["contacts"], body["external_ref"], body["tags"]) == (
        None,
        None,
        [],
        None,
        [],
    )
    # "plan" is configured as non-personal (CUSTOMER_ERASURE_KEEP_ATTRIBUTES); "birthday" is not.
    assert body["attributes"] == {"plan": "pro"}
    assert (body["kind"], body["segment"], body["owner"], body["status"], body["churn_reason"]) == (
        "person",
        "consumer",
        "agent-3",
        "churned",
        "relocation",
    )
    assert body["created_at"] == customer["created_at"] and body["erased_at"] is not None
    async with api.database.sessions() as session:
        notes = (await session.execute(select(StatusChange.note))).scalars().all()
        tags = (await session.execute(select(CustomerTag))).all()
        keys = (await session.execute(select(CustomerAttribute.key))).scalars().all()
        idempotency = (await session.execute(select(IdempotencyKey))).all()
    assert (notes, tags, keys, idempotency) == ([None, None], [], ["plan"], [])


async def test_erasure_answers_202_with_a_receipt_link_and_emits_erased_and_confirmed(api):
    customer = await api.create(**PERSONAL)
    response = await api.client.delete(f"/customers/{customer['id']}")
    assert response.status_code == 202
    assert response.headers["location"] == f"/customers/{customer['id']}/erasure"
    receipt = response.json()
    assert receipt["services"]["customer"] is not None
    assert receipt["services"]["interaction"] is None and receipt["complete"] is False
    [erased] = await api.events("customer.erased")
    [own] = await api.events("erasure.confirmed")
    assert erased["subject"] == own["subject"] == customer["id"]
    assert own["data"]["service"] == "customer"
    # A second DELETE changes nothing and emits nothing more.
    again = await api.client.delete(f"/customers/{customer['id']}")
    assert again.status_code == 202 and again.json()["requested_at"] == receipt["requested_at"]
    assert len(await api.events("customer.erased")) == 1


async def test_an_erased_customer_cannot_be_patched_or_moved(api):
    customer = await _erased_customer(api)
    patch = await api.client.patch(f"/customers/{customer['id']}", json={"name": "Back"}, headers={"If-Match": "*"})
    status = await api.client.post(f"/customers/{customer['id']}/status", json={"status": "won_back"})
    assert (patch.status_code, status.status_code) == (409, 409)
    assert patch.json()["type"] == "urn:crm:problem:erased"


async def test_receipts_from_erasure_confirmed_events_complete_the_erasure_idempotently(api):
    customer = await _erased_customer(api)
    t0 = datetime(2026, 2, 1, 12, tzinfo=UTC)
    async with api.database.transaction() as session:
        await on_erasure_confirmed(UnitOfWork(session), confirmed(customer["id"], "interaction", t0, "e-1"))
        await on_erasure_confirmed(UnitOfWork(session), confirmed(customer["id"], "scoring", t0, "e-2"))
        # The same confirmation again, under a new event id and later: the first one stands.
        await on_erasure_confirmed(
            UnitOfWork(session), confirmed(customer["id"], "scoring", t0 + timedelta(hours=1), "e-3")
        )
    status = (await api.client.get(f"/customers/{customer['id']}/erasure")).json()
    assert status["services"]["interaction"] == "2026-02-01T12:00:00Z"
    assert status["services"]["scoring"] == "2026-02-01T12:00:00Z"
    assert status["services"]["retention"] is None and status["complete"] is False
    async with api.database.transaction() as session:
        await on_erasure_confirmed(UnitOfWork(session), confirmed(customer["id"], "retention", t0, "e-4"))
    status = (await api.client.get(f"/customers/{customer['id']}/erasure")).json()
    assert status["complete"] is True
    assert sorted(r["service"] for r in status["receipts"]) == ["customer", "interaction", "retention", "scoring"]


async def test_a_confirmation_for_an_unknown_customer_is_poison(api):
    with pytest.raises(PoisonEvent):
        async with api.database.transaction() as session:
            await on_erasure_confirmed(
                UnitOfWork(session), confirmed("nobody", "interaction", datetime.now(UTC), "e-9")
            )


async def test_erasure_receipts_of_a_customer_never_erased_are_a_404(api):
    customer = await api.create()
    response = await api.client.get(f"/customers/{customer['id']}/erasure")
    assert response.status_code == 404
