"""The retention batch's inbox claim as its preload runs it (services/retention/batch_rows.py
claim_and_preload, a servicekit ClaimingHook): on PostgreSQL inside the preload's first statement. The same
events claimed, the same inbox rows, the same states and the same signals stored as the claim sent on its
own and then the separate statements of the preload (tests/unit/retention/batch_reference.py), for random
stores and batches with events handled before (some with their signal gone) and events that come twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.inbox import Claim, claimed_events
from servicekit.inbox.applier import BatchApplier
from servicekit.inbox.delivery import Delivery
from servicekit.tables import INBOX
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.handlers import HANDLERS
from services.retention.settings import RetentionSettings
from services.retention.signals import service as signals
from services.retention.signals.models import Signal
from tests.unit.retention.batch_reference import preload_separately
from tests.unit.retention.events import complaint, score
from tests.unit.retention.test_batch_preload import CUSTOMERS, batch_snapshot, random_batch, seed_batch_rows
from tests.unit.retention.test_batch_rows import seed_random

Claiming = Any  # (uow, events, claim) -> the ids claimed


def applier(database: Database) -> BatchApplier:
    return BatchApplier(database, RetentionSettings(database_url=database.url), HANDLERS)


def claim_of(database: Database, events: list[Received[Any]]) -> Claim:
    """The claim the service's applier would send for these events."""
    return applier(database)._claim_of([Delivery(cast(Any, None), event=e) for e in events])


async def claim_then_separately(uow: UnitOfWork, events: list[Received[Any]], claim: Claim) -> set[str]:
    """The reference: the claim as a statement of its own, then the preload's separate statements for the
    events it claimed."""
    claimed = await claim.run(uow.session)
    await preload_separately(uow, claimed_events(events, claimed))
    return claimed


async def claimed_and_preloaded(database: Database, hook: Claiming, events: list[Received[Any]]) -> dict[str, Any]:
    """What was claimed, the states, the signals and the inbox rows after the hook, in a transaction then
    rolled back."""
    async with database.sessions() as session:
        uow = UnitOfWork(session)
        claimed = await hook(uow, events, claim_of(database, events))
        got = batch_snapshot(uow)
        got["claimed"] = sorted(claimed)
        got["signals"] = sorted((await session.execute(select(Signal.event_id))).scalars())
        inbox = select(INBOX.c.consumer, INBOX.c.event_id, INBOX.c.event_type, INBOX.c.outcome)
        got["inbox"] = sorted(tuple(r) for r in await session.execute(inbox))
        await session.rollback()
    return got


async def seed_handled(database: Database, rng: random.Random, batches: list[list[Received[Any]]]) -> None:
    """Inbox rows for some of the batches' events: handled before (redelivered now)."""
    group = RetentionSettings(database_url=database.url).consumer_group
    events = {e.id: e for batch in batches for e in batch}  # each once
    rows = [
        {"consumer": group, "event_id": e.id, "event_type": e.envelope.type, "outcome": "handled"}
        for e in events.values()
        if rng.random() < 0.25
    ]
    async with database.transaction() as session:
        await session.execute(INBOX.insert(), [{**r, "handled_at": datetime.now(UTC)} for r in rows])


def with_copies(rng: random.Random, events: list[Received[Any]]) -> list[Received[Any]]:
    """The batch with some of its events a second time, later in it (a redelivery within one poll)."""
    copies = [e for e in events if rng.random() < 0.15]
    return events + copies


async def assert_the_claim_in_the_preload_equals_the_claim_then_the_preload(
    database: Database, seed: int, hook: Claiming = batch_rows.claim_and_preload
) -> None:
    rng = random.Random(seed)
    await seed_random(database, seed, customers=CUSTOMERS)
    batches = [with_copies(rng, random_batch(rng, size)) for size in (1, 2, 2, 5, 20, 20, 60)]
    # a batch whose events were all handled before, and one whose customer only a handled event names
    handled_before = [score("b-0003", 0.7, minutes=900), complaint("b-0003", minutes=901)]
    batches += [handled_before, [*batches[1], score("b-0999", 0.5, minutes=902)]]
    once = [list({e.id: e for batch in batches for e in batch}.values())]
    await seed_batch_rows(database, rng, once)
    await seed_handled(database, rng, batches[:-2])
    async with database.transaction() as session:
        await session.execute(
            INBOX.insert(),
            [
                {"consumer": applier(database).group, "event_id": e.id, "event_type": e.envelope.type}
                | {"outcome": "handled", "handled_at": datetime.now(UTC)}
                for e in (*handled_before, batches[-1][-1])
            ],
        )
    seen: set[str] = set()
    for events in batches:
        got = await claimed_and_preloaded(database, hook, events)
        assert got == await claimed_and_preloaded(database, claim_then_separately, events)
        ids = [e.id for e in events]
        if set(got["claimed"]) < set(ids):
            seen.add("a redelivered event")
        if len(set(ids)) < len(ids):
            seen.add("an event twice")
        if any(e.id not in got["claimed"] + got["signals"] for e in signals.watched(events)):
            seen.add("a handled event without its signal")
        if not got["claimed"]:
            seen.add("nothing claimed")
    assert seen == {"a redelivered event", "an event twice", "a handled event without its signal", "nothing claimed"}


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_claim_in_the_preload_claims_loads_and_stores_what_the_claim_then_the_preload_did(
    database: Database, seed: int
) -> None:
    await assert_the_claim_in_the_preload_equals_the_claim_then_the_preload(database, seed)
