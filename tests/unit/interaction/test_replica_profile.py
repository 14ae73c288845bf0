"""The replica's profile (segment, team, account-managed and scored tier), kept from the customer events and
score.updated through the consumer's handlers: guarded by version and score time, idempotent on
redelivery, and blanked (for good) by erasure."""

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import topics
from contracts.customer import CustomerCreated, CustomerErased, CustomerUpdated
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.interaction.handlers import HANDLERS
from services.interaction.main import SPEC
from services.interaction.replica import service
from services.interaction.replica.directory import CustomerSnapshot
from services.interaction.replica.models import KnownCustomer
from tests.unit.interaction.conftest import received

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def created(segment: str | None, attributes: dict[str, Any], owner: str | None = None) -> CustomerCreated:
    return CustomerCreated(
        customer_id="c-1",
        owner=owner,
        kind="company",
        status="active",
        created_at=T0,
        external_ref_set=False,
        segment=segment,
        attributes=attributes,
    )


def updated(
    version: int, segment: str | None, attributes: dict[str, Any], changed: list[str], owner: str | None = None
) -> CustomerUpdated:
    return CustomerUpdated(
        customer_id="c-1",
        owner=owner,
        version=version,
        changed=changed,
        external_ref_set=False,
        segment=segment,
        attributes=attributes,
    )


def scored(tier: str | None, at: datetime) -> ScoreUpdated:
    return ScoreUpdated(
        customer_id="c-1",
        previous=None,
        current=ScoreValues(churn_risk=0.2, health=0.8, value_tier=tier),
        model_version="v1",
        caused_by="e-0",
        computed_at=at,
    )


async def handle(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def profile(database: Database) -> tuple[Any, ...]:
    async with database.sessions() as session:
        row = await session.get(KnownCustomer, "c-1")
        assert row is not None
        return row.segment, row.team, row.managed_tier, row.scored_tier


def test_the_consumer_reads_the_scoring_topic() -> None:
    assert topics.SCORING in SPEC.consumes


async def test_customer_events_keep_segment_team_and_managed_tier_by_version(database):
    first = received(created("retail", {"team": "north", "tier": "Gold", "share_of_wallet": 0.4}), "e-1")
    await handle(database, first)
    assert await profile(database) == ("retail", "north", "gold", None)
    await handle(database, first)  # redelivered: the same row
    assert await profile(database) == ("retail", "north", "gold", None)
    # Events carry the current segment and attributes whatever changed: an owner change still brings them.
    await handle(database, received(updated(3, "wholesale", {"team": "south"}, ["owner"])))
    assert await profile(database) == ("wholesale", "south", None, None)
    await handle(database, received(updated(2, "retail", {"team": "north"}, ["segment"])))  # late, older
    assert await profile(database) == ("wholesale", "south", None, None)
    # Not a team: a number, or text over 100 characters; not a tier: an unknown name.
    await handle(database, received(updated(4, None, {"team": 7, "value_tier": "diamond"}, ["attributes"])))
    assert await profile(database) == (None, None, None, None)
    await handle(database, received(updated(5, None, {"team": "x" * 101}, ["attributes"])))
    assert (await profile(database))[1] is None


async def test_the_created_event_fills_the_profile_of_a_row_taken_from_the_customer_service_first(database):
    """An interaction posted before the replica caught up takes the customer from the customer service (a
    snapshot of version 1, without the profile); the created event of that version still brings it."""
    async with database.transaction() as session:
        await service.apply_customer_snapshot(session=session, snapshot=CustomerSnapshot("c-1", "active", None, 1, T0))
    await handle(database, received(created("retail", {"team": "north"})))
    assert await profile(database) == ("retail", "north", None, None)


async def test_score_updates_keep_the_latest_scored_tier_even_before_the_customer_arrives(database):
    later = received(scored("gold", T0 + timedelta(hours=2)), "s-2")
    await handle(database, later)  # before customer.created: the row is made and keeps the tier
    await handle(database, received(created("retail", {}), "e-1"))
    assert await profile(database) == ("retail", None, None, "gold")
    await handle(database, later, received(scored("iron", T0 + timedelta(hours=1)), "s-1"))  # redelivery, older
    assert await profile(database) == ("retail", None, None, "gold")
    await handle(database, received(scored(None, T0 + timedelta(hours=3)), "s-3"))  # no tier any more
    assert await profile(database) == ("retail", None, None, None)


async def test_erasure_blanks_the_profile_and_later_events_do_not_restore_it(database):
    await handle(
        database,
        received(created("retail", {"team": "north", "tier": "platinum"})),
        received(scored("gold", T0)),
    )
    assert await profile(database) == ("retail", "north", "platinum", "gold")
    erased = received(CustomerErased(customer_id="c-1", erased_at=T0 + timedelta(days=1)), "x-1")
    await handle(database, erased)
    await handle(
        database,
        erased,  # redelivered
        received(updated(2, "wholesale", {"team": "south", "tier": "gold"}, [])),
        received(scored("iron", T0 + timedelta(days=2))),
    )
    assert await profile(database) == (None, None, None, None)
    async with database.sessions() as session:
        row = await session.get(KnownCustomer, "c-1")
        assert row is not None
        assert (row.erased, row.external_ref) == (True, None)


async def test_erasure_blanks_the_owner_and_later_events_do_not_restore_it(database):
    await handle(database, received(created("retail", {}, owner="u-ann")))
    async with database.sessions() as session:
        row = await session.get(KnownCustomer, "c-1")
        assert row is not None and row.owner == "u-ann"
    erased = received(CustomerErased(customer_id="c-1", erased_at=T0 + timedelta(days=1)), "x-1")
    await handle(database, erased)
    await handle(
        database,
        erased,  # redelivered
        received(updated(2, "wholesale", {}, ["owner"], owner="u-bob")),  # a late update naming an owner
        received(created("retail", {}, owner="u-ann"), "c-again"),  # and the creation again
    )
    async with database.sessions() as session:
        row = await session.get(KnownCustomer, "c-1")
        assert row is not None
        assert (row.erased, row.owner, row.owner_known) == (True, None, True)
