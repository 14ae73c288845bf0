"""Replica rows from before the replica kept owners and profiles (segment, team, account-managed and scored
tier) are filled once, after the upgrade, from the customer service's lookup with profile=True: what an
event or a newer score set meanwhile is kept, and the customer service's answer is read as it sends it."""

from datetime import UTC, datetime, timedelta

from contracts.customer import CustomerCreated
from services.customer.customers.lookup import CustomerRef
from services.interaction.replica import service
from services.interaction.replica.backfill import backfill_owners
from services.interaction.replica.directory import CustomerSnapshot, _snapshot
from services.interaction.replica.models import KnownCustomer

AT = datetime(2026, 1, 1, tzinfo=UTC)


def snapshot(customer_id: str, scored_at: datetime) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer_id, "active", None, 3, AT, owner=f"owner-of-{customer_id}", segment="smb", team="north",
        managed_tier="gold", scored_tier="iron", scored_tier_at=scored_at,
    )  # fmt: skip


async def row(database, customer_id: str) -> tuple[object, ...]:
    async with database.sessions() as session:
        found = await session.get(KnownCustomer, customer_id)
        assert found is not None
        return (
            found.owner, found.segment, found.team, found.managed_tier, found.scored_tier, found.profile_known,
        )  # fmt: skip


async def test_rows_from_before_the_profile_columns_get_segment_team_and_tiers_once(database):
    async with database.transaction() as session:
        session.add_all(
            [
                # Before the owner column and the profile columns, and before the profile columns only.
                KnownCustomer(customer_id="old-1", version=1),
                KnownCustomer(customer_id="old-2", version=1, owner="kept", owner_known=True),
                # A newer score than the master's already held.
                KnownCustomer(
                    customer_id="old-3", version=1, scored_tier="lead", scored_tier_at=AT + timedelta(days=9)
                ),
            ]
        )
    asked: list[list[str]] = []

    async def lookup_many(ids):
        asked.append(list(ids))
        return {i: snapshot(i, AT + timedelta(days=5)) for i in ids}

    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many) == 3
    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many) == 0  # once

    assert asked == [["old-1", "old-2", "old-3"]]
    assert await row(database, "old-1") == ("owner-of-old-1", "smb", "north", "gold", "iron", True)
    assert await row(database, "old-2") == ("kept", "smb", "north", "gold", "iron", True)
    assert await row(database, "old-3") == ("owner-of-old-3", "smb", "north", "gold", "lead", True)


async def test_a_row_whose_profile_an_event_set_is_not_asked_for_it(database):
    async with database.transaction() as session:
        data = CustomerCreated(
            customer_id="c-1", kind="company", status="active", created_at=AT, owner="ann", segment="retail",
            attributes={"team": "south"},
        )  # fmt: skip
        await service.apply_customer_created(session=session, data=data)

    async def lookup_many(ids):
        raise AssertionError(f"asked for {ids}")

    async with database.transaction() as session:
        assert await backfill_owners(session=session, lookup_many=lookup_many) == 0
    assert await row(database, "c-1") == ("ann", "retail", "south", None, None, True)


def test_the_customer_service_s_lookup_answer_is_read_with_owner_and_profile() -> None:
    """The two services' halves of the lookup agree: what the customer service sends, the replica reads."""
    scored_at = AT + timedelta(days=2)
    sent = CustomerRef(
        id="c-1", status="active", version=4, updated_at=AT, owner="ann", segment="smb", team="north", tier="gold",
        scored_tier="iron", scored_tier_at=scored_at,
    ).model_dump(mode="json")  # fmt: skip

    read = _snapshot("c-1", sent)

    assert (read.owner, read.segment, read.team, read.managed_tier) == ("ann", "smb", "north", "gold")
    assert (read.scored_tier, read.scored_tier_at, read.version) == ("iron", scored_at, 4)
