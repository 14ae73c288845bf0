"""The owner in the customer replica: set by every customer event and snapshot, guarded by the customer version,
backfilled once for rows from before, and used by the complaint list to narrow to an owner's customers."""

from datetime import UTC, datetime

from contracts.customer import CustomerCreated, CustomerUpdated
from services.interaction.complaints import service as complaints
from services.interaction.interactions.models import Interaction
from services.interaction.replica import service
from services.interaction.replica.backfill import backfill_owners
from services.interaction.replica.directory import CustomerSnapshot
from services.interaction.replica.models import KnownCustomer

AT = datetime(2026, 1, 1, tzinfo=UTC)


def created(customer_id: str, owner: str | None) -> CustomerCreated:
    return CustomerCreated(customer_id=customer_id, kind="company", status="active", created_at=AT, owner=owner)


def updated(customer_id: str, version: int, owner: str | None) -> CustomerUpdated:
    return CustomerUpdated(customer_id=customer_id, version=version, changed=["owner"], owner=owner)


async def owner_of(database, customer_id: str) -> tuple[str | None, bool]:
    async with database.transaction() as session:
        row = await session.get(KnownCustomer, customer_id)
        assert row is not None
        return row.owner, row.owner_known


async def test_events_set_the_owner_and_an_older_update_does_not_undo_a_newer_one(database):
    async with database.transaction() as session:
        await service.apply_customer_created(session=session, data=created("c1", "alice"))
    assert await owner_of(database, "c1") == ("alice", True)
    async with database.transaction() as session:
        await service.apply_customer_updated(session=session, data=updated("c1", 3, "bob"))
        await service.apply_customer_updated(session=session, data=updated("c1", 2, "alice"))  # late, older
    assert await owner_of(database, "c1") == ("bob", True)
    async with database.transaction() as session:
        await service.apply_customer_updated(session=session, data=updated("c1", 4, None))  # unassigned
    assert await owner_of(database, "c1") == (None, True)


async def test_rows_from_before_are_backfilled_once_from_the_customer_service(database):
    async with database.transaction() as session:
        session.add_all(
            [
                KnownCustomer(customer_id="old-1", version=1),
                KnownCustomer(customer_id="old-2", version=1),
                KnownCustomer(customer_id="gone", version=1),
                KnownCustomer(customer_id="erased", version=1, erased=True),
            ]
        )
    asked: list[list[str]] = []

    async def lookup_many(ids):
        asked.append(list(ids))
        return {
            i: None if i == "gone" else CustomerSnapshot(i, "active", None, 1, AT, owner=f"owner-of-{i}") for i in ids
        }

    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many, batch=2) == 2
    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many, batch=2) == 1
    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many, batch=2) == 0
    assert asked == [["gone", "old-1"], ["old-2"]]  # the erased customer is never asked about
    assert await owner_of(database, "old-1") == ("owner-of-old-1", True)
    assert await owner_of(database, "gone") == (None, True)
    assert await owner_of(database, "erased") == (None, False)


async def test_the_complaint_list_narrows_to_an_owners_customers_and_names_each_owner(database):
    async with database.transaction() as session:
        for customer, owner in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
            await service.apply_customer_created(session=session, data=created(customer, owner))
            session.add(
                Interaction(
                    customer_id=customer,
                    type="complaint",
                    severity="high",
                    complaint_status="open",
                    occurred_at=AT,
                    due_at=AT,
                )
            )
    async with database.transaction() as session:
        mine, total = await complaints.list_complaints(session=session, owners=["alice"])
        everyone, everyone_total = await complaints.list_complaints(session=session)
    assert total == 2 and sorted((i.customer_id, owner) for i, owner in mine) == [("a1", "alice"), ("a2", "alice")]
    assert everyone_total == 3 and {owner for _, owner in everyone} == {"alice", "bob"}
