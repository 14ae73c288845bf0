"""The customer's scored value tier, kept from score.updated (crm.scoring.v1) through the consumer's
handlers: the latest computed score wins, a redelivery changes nothing, an erased or unknown customer
gets nothing, and erasure removes the tier."""

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import topics
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.events.envelope import CloudEvent, Received
from servicekit.unit_of_work import UnitOfWork
from services.customer.customers.models import Customer
from services.customer.handlers import BEFORE_BATCH, HANDLERS
from services.customer.main import SPEC
from services.customer.scores.service import latest_scores
from tests.statements import statements_sent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def scored(customer_id: str, tier: str | None, at: datetime) -> Received[ScoreUpdated]:
    data = ScoreUpdated(
        customer_id=customer_id,
        previous=None,
        current=ScoreValues(churn_risk=0.2, health=0.8, value_tier=tier),
        model_version="v1",
        caused_by="e-0",
        computed_at=at,
    )
    return Received(envelope=CloudEvent.wrap(data, source="/crm/scoring"), data=data)


async def handle(api: Any, *events: Received[ScoreUpdated]) -> None:
    async with api.database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def held(api: Any, customer_id: str) -> tuple[str | None, datetime | None]:
    async with api.database.sessions() as session:
        row = await session.get(Customer, customer_id)
        assert row is not None
        return row.scored_tier, row.scored_tier_at


def test_the_consumer_reads_the_scoring_topic() -> None:
    assert topics.SCORING in SPEC.consumes
    assert ScoreUpdated.event_type in HANDLERS


async def test_the_latest_computed_score_sets_the_tier_and_redelivery_or_an_older_score_changes_nothing(api):
    customer = (await api.create())["id"]
    later = scored(customer, "Gold", T0 + timedelta(hours=2))
    await handle(api, later)
    assert await held(api, customer) == ("gold", T0 + timedelta(hours=2))
    await handle(api, later, scored(customer, "iron", T0 + timedelta(hours=1)))  # redelivered, then older
    assert await held(api, customer) == ("gold", T0 + timedelta(hours=2))
    await handle(api, scored(customer, None, T0 + timedelta(hours=3)))  # the latest score has no tier
    assert await held(api, customer) == (None, T0 + timedelta(hours=3))
    await handle(api, scored(customer, "diamond", T0 + timedelta(hours=4)))  # not a value tier
    assert await held(api, customer) == (None, T0 + timedelta(hours=4))
    # The score is no customer change: no version, no event.
    got = (await api.client.get(f"/customers/{customer}")).json()
    assert got["version"] == 1
    assert await api.events("customer.updated") == []


async def test_a_score_for_an_unknown_customer_is_ignored(api):
    await handle(api, scored("no-such-customer", "gold", T0))
    async with api.database.sessions() as session:
        assert await session.get(Customer, "no-such-customer") is None


async def test_erasure_removes_the_scored_tier_and_a_later_score_does_not_bring_it_back(api):
    customer = (await api.create())["id"]
    await handle(api, scored(customer, "platinum", T0))
    assert (await held(api, customer))[0] == "platinum"
    erased = await api.client.delete(f"/customers/{customer}")
    assert erased.status_code == 202, erased.text
    assert await held(api, customer) == (None, None)
    await handle(api, scored(customer, "gold", T0 + timedelta(days=1)))
    assert await held(api, customer) == (None, None)


async def handle_batch(api: Any, *events: Received[ScoreUpdated]) -> None:
    """As the consumer applies a poll: the batch hook, then every event's handler, in one transaction."""
    async with api.database.transaction() as session:
        uow = UnitOfWork(session)
        await BEFORE_BATCH(uow, list(events))
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def test_a_batch_of_scores_leaves_what_one_by_one_would_in_the_same_statements_whatever_its_size(api):
    customers = [(await api.create())["id"] for _ in range(12)]
    erased = customers.pop()
    assert (await api.client.delete(f"/customers/{erased}")).status_code == 202
    await handle(api, scored(customers[0], "gold", T0 + timedelta(hours=5)))  # held already, computed later
    sent_per_batch = []
    for size in (3, 11):
        batch = [scored(c, "iron", T0 + timedelta(hours=2)) for c in customers[:size]]
        batch += [scored(c, "platinum", T0 + timedelta(hours=1)) for c in customers[:size]]  # older: ignored
        batch += [scored(erased, "gold", T0), scored("no-such-customer", "gold", T0)]
        with statements_sent(api.database.engine.sync_engine, "UPDATE") as sent:
            await handle_batch(api, *batch)
        sent_per_batch.append(len(sent))
    assert sent_per_batch[0] == sent_per_batch[1] == 1
    assert await held(api, customers[0]) == ("gold", T0 + timedelta(hours=5))
    assert {await held(api, c) for c in customers[1:]} == {("iron", T0 + timedelta(hours=2))}
    assert await held(api, erased) == (None, None)


def test_of_a_customers_scores_the_latest_computed_is_kept_and_of_equal_times_the_later_one():
    first, later = scored("c-1", "gold", T0).data, scored("c-1", "silver", T0).data
    older, other = scored("c-1", "bronze", T0 - timedelta(hours=1)).data, scored("c-2", "gold", T0).data
    assert latest_scores([first, older, later, other]) == [later, other]
