from datetime import UTC, datetime

from sqlalchemy import select

from contracts.customer import CustomerErased
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.interaction.complaints.models import ComplaintStep, ComplaintTransition
from services.interaction.complaints.service import transition_complaint
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.handlers import HANDLERS
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.service import record_interaction
from tests.unit.interaction.conftest import SLA_HOURS, FakeCustomerService, created, outbox_events, received

ERASED_AT = datetime(2026, 2, 1, tzinfo=UTC)


async def handle(database: Database, *events) -> None:
    for event in events:
        async with database.transaction() as session:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def test_erasure_blanks_texts_resolutions_and_notes_and_confirms_once(database):
    await handle(database, received(created("c-1")))
    async with database.transaction() as session:
        lookup = FakeCustomerService().fetch
        complaint, _ = await record_interaction(
            session=session,
            data=InteractionCreate(customer_id="c-1", type="complaint", severity="low", text="I live at ..."),
            sla_hours=SLA_HOURS,
            lookup=lookup,
        )
        await record_interaction(
            session=session, data=InteractionCreate(customer_id="c-1", type="call"), sla_hours=SLA_HOURS, lookup=lookup
        )
        for to, extra in [("acknowledged", {"note": "spoke to Mrs X"}), ("valid", {}), ("resolved", {})]:
            resolution = "refund to IBAN DE.." if to == "resolved" else None
            change = ComplaintTransition(to=ComplaintStatus(to), resolution=resolution, **extra)
            await transition_complaint(session=session, complaint_id=complaint.id, change=change)

    erased = CustomerErased(customer_id="c-1", erased_at=ERASED_AT)
    await handle(database, received(erased, "e-1"), received(erased, "e-2"))  # the second under another id

    async with database.sessions() as session:
        stored = (await session.execute(select(Interaction).where(Interaction.id == complaint.id))).scalar_one()
        notes = list((await session.execute(select(ComplaintStep.note))).scalars())
    assert (stored.text, stored.resolution) == (None, None)
    assert notes == [None, None, None]
    receipts = [e for e in await outbox_events(database) if e["type"] == "erasure.confirmed"]
    assert len(receipts) == 1
    [receipt] = receipts
    assert (receipt["topic"], receipt["key"], receipt["data"]["service"]) == ("crm.erasure.v1", "c-1", "interaction")
    assert "from 1 interaction(s)" in receipt["data"]["summary"] and "Kept 2" in receipt["data"]["summary"]


async def test_an_erasure_of_a_customer_never_seen_still_confirms(database):
    await handle(database, received(CustomerErased(customer_id="ghost", erased_at=ERASED_AT)))
    [receipt] = [e for e in await outbox_events(database) if e["type"] == "erasure.confirmed"]
    assert receipt["data"]["customer_id"] == "ghost"
