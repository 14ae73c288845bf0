from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from contracts.customer import CustomerErased, CustomerUpdated
from contracts.erp import ErpOrderPlaced, ErpReturnCreated, ScmShipmentLost
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent, EventData, Received
from servicekit.inbox import PoisonEvent
from servicekit.unit_of_work import UnitOfWork
from services.interaction.handlers import HANDLERS
from services.interaction.inbound.models import ParkedEvent
from services.interaction.inbound.service import sweep_parked
from services.interaction.interactions.models import Interaction
from services.interaction.replica.models import KnownCustomer
from tests.unit.interaction.conftest import SLA_HOURS, created, outbox_events

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def inbound(data: EventData, event_id: str | None = None) -> Received:
    envelope = CloudEvent.wrap(data, source="/erp/sap")
    if event_id is not None:
        envelope.id = event_id
    return Received(envelope=envelope, data=data)


def order(order_id: str = "O-1", ref: str = "ERP-7", **fields) -> ErpOrderPlaced:
    values = {"amount": "99.90", "currency": "EUR", "quantity": 2, "placed_at": AT} | fields
    return ErpOrderPlaced(order_id=order_id, customer_ref=ref, **values)


async def handle(database: Database, *events: Received) -> None:
    for event in events:
        async with database.transaction() as session:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def interactions(database: Database) -> list[Interaction]:
    async with database.sessions() as session:
        return list((await session.execute(select(Interaction).order_by(Interaction.occurred_at))).scalars())


async def parked(database: Database) -> list[ParkedEvent]:
    async with database.sessions() as session:
        return list((await session.execute(select(ParkedEvent).order_by(ParkedEvent.id))).scalars())


async def test_an_order_for_a_known_reference_becomes_a_purchase_of_that_customer(database):
    await handle(database, received_created("c-1", "ERP-7"), inbound(order()))
    [purchase] = await interactions(database)
    assert (purchase.customer_id, purchase.type, purchase.order_id, purchase.external_id) == (
        "c-1",
        "purchase",
        "O-1",
        "erp-order:O-1",
    )
    [event] = [e for e in await outbox_events(database) if e["type"] == "interaction.recorded"]
    assert (event["key"], event["data"]["amount"], event["data"]["order_id"]) == ("c-1", "99.90", "O-1")


async def test_an_order_s_offer_code_reaches_the_purchase_and_its_event(database):
    await handle(database, received_created("c-1", "ERP-7"), inbound(order(offer_code="winback-20")))
    [purchase] = await interactions(database)
    assert purchase.offer_code == "winback-20"
    [event] = [e for e in await outbox_events(database) if e["type"] == "interaction.recorded"]
    assert event["data"]["offer_code"] == "winback-20"
    with pytest.raises(ValueError):
        order(offer_code="Not A Code")


async def test_an_order_for_an_unknown_reference_is_parked_then_applied_when_the_customer_appears(database):
    await handle(database, inbound(order(), "evt-1"))
    [row] = await parked(database)
    assert (row.event_id, row.customer_ref, row.event_type, row.attempts) == ("evt-1", "ERP-7", "erp.order.placed", 0)
    assert row.envelope["data"]["order_id"] == "O-1" and "ERP-7" in row.reason
    assert await interactions(database) == []
    assert await outbox_events(database) == []

    await handle(database, received_created("c-1", "ERP-7"))
    [purchase] = await interactions(database)
    assert (purchase.customer_id, purchase.external_id) == ("c-1", "erp-order:O-1")
    assert await parked(database) == []
    assert [e["type"] for e in await outbox_events(database)] == ["interaction.recorded"]


async def test_a_reference_given_later_by_an_update_releases_the_parked_events(database):
    await handle(database, received_created("c-1", None), inbound(order()))
    assert len(await parked(database)) == 1
    update = CustomerUpdated(customer_id="c-1", version=2, changed=["external_ref"], external_ref="ERP-7")
    await handle(database, inbound_customer(update))
    assert [i.customer_id for i in await interactions(database)] == ["c-1"]
    assert await parked(database) == []


async def test_a_repeated_order_event_adds_nothing_whether_parked_or_applied(database):
    await handle(database, inbound(order(), "evt-1"), inbound(order(), "evt-2"))  # both parked
    await handle(database, received_created("c-1", "ERP-7"))
    await handle(database, inbound(order(), "evt-3"))  # after it was applied
    assert len(await interactions(database)) == 1
    assert await parked(database) == []
    assert [e["type"] for e in await outbox_events(database)] == ["interaction.recorded"]


async def test_a_lost_shipment_becomes_a_high_delivery_complaint_with_an_sla(database):
    lost = ScmShipmentLost(shipment_id="S-1", order_id="O-1", customer_ref="ERP-7", reported_at=AT)
    await handle(database, received_created("c-1", "ERP-7"), inbound(lost))
    [complaint] = await interactions(database)
    assert (complaint.type, complaint.severity, complaint.category, complaint.complaint_status) == (
        "complaint",
        "high",
        "delivery",
        "open",
    )
    assert complaint.due_at == AT + timedelta(hours=24)
    assert [e["type"] for e in await outbox_events(database)] == ["interaction.recorded", "complaint.opened"]


async def test_an_event_that_cannot_become_an_interaction_is_poison_and_not_parked(database):
    future = order(placed_at=datetime.now(UTC) + timedelta(days=2))
    async with database.transaction() as session:
        with pytest.raises(PoisonEvent, match="occurred_at"):
            await HANDLERS[future.event_type](UnitOfWork(session), inbound(future))
    assert await parked(database) == []


async def test_erasure_forgets_the_reference_so_a_later_event_for_it_finds_no_customer(database):
    await handle(database, received_created("c-1", "ERP-7"))
    await handle(database, inbound_customer(CustomerErased(customer_id="c-1", erased_at=AT)))
    async with database.sessions() as session:
        assert (await session.get(KnownCustomer, "c-1")).external_ref is None  # type: ignore[union-attr]
    await handle(database, inbound(order()))
    assert [row.customer_ref for row in await parked(database)] == ["ERP-7"]
    assert await interactions(database) == []


async def test_an_event_for_an_erased_customer_still_holding_its_reference_is_poison(database):
    async with database.transaction() as session:  # a replica row erased before the reference was cleared
        session.add(KnownCustomer(customer_id="c-1", external_ref="ERP-7", version=1, erased=True))
    async with database.transaction() as session:
        with pytest.raises(PoisonEvent, match="erased"):
            await HANDLERS["erp.order.placed"](UnitOfWork(session), inbound(order()))


async def test_the_sweep_applies_events_parked_while_their_customer_arrived(database):
    await handle(database, inbound(order()))
    # The customer's event committed just before the parking one: the handler saw no parked event.
    async with database.transaction() as session:
        session.add(KnownCustomer(customer_id="c-1", external_ref="ERP-7", version=1))
    async with database.transaction() as session:
        assert await sweep_parked(session=session, sla_hours=SLA_HOURS) == 1
    assert [i.customer_id for i in await interactions(database)] == ["c-1"]
    assert await parked(database) == []


async def test_a_parked_event_that_fails_to_apply_stays_parked_with_the_error(database):
    await handle(database, inbound(order("O-1")), inbound(order("O-2")))
    async with database.transaction() as session:
        broken = (
            await session.execute(select(ParkedEvent).where(ParkedEvent.event_type == "erp.order.placed"))
        ).scalars()
        first = next(iter(broken))
        first.envelope = {**first.envelope, "data": {"customer_ref": "ERP-7"}}  # lost its order
    await handle(database, received_created("c-1", "ERP-7"))
    assert [i.order_id for i in await interactions(database)] == ["O-2"]  # the other one still applied
    [left] = await parked(database)
    assert left.attempts == 1 and left.last_error and "order_id" in left.last_error


async def test_returns_of_a_known_customer_are_recorded_once(database):
    ret = ErpReturnCreated(return_id="R-1", customer_ref="ERP-7", amount="10.00", returned_at=AT)
    await handle(database, received_created("c-1", "ERP-7"), inbound(ret, "a"), inbound(ret, "b"))
    assert [(i.type, i.external_id) for i in await interactions(database)] == [("return", "erp-return:R-1")]
    async with database.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(ParkedEvent))).scalar_one() == 0


def received_created(customer_id: str, ref: str | None) -> Received:
    return inbound_customer(created(customer_id, external_ref=ref))


def inbound_customer(data: EventData) -> Received:
    return Received(envelope=CloudEvent.wrap(data, source="/crm/customer"), data=data)
