"""A claim-aware before-batch hook (servicekit.inbox.ClaimingHook): the applier hands it the batch's inbox
claim instead of sending it, and applies exactly what the claim took, as with a claim of its own: events
handled before and second copies skipped and counted as duplicates, dead letters claimed, nothing kept if
the batch fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import select

from contracts.customer import CustomerCreated
from servicekit.db import Database
from servicekit.events import Received
from servicekit.inbox import Claim, ClaimingHook, EventConsumer, claimed_events
from servicekit.settings import ServiceSettings
from servicekit.tables import INBOX
from servicekit.unit_of_work import UnitOfWork
from tests.unit.servicekit.conftest import EFFECTS
from tests.unit.servicekit.test_inbox_consumer import TOPIC, _count, _event, _record, record_effect


class Hook:
    """A service's claiming preload: sends the claim (here as its own statement), keeps what it loaded for."""

    def __init__(self) -> None:
        self.given: list[list[str]] = []
        self.loaded: list[list[str]] = []

    async def claim_and_load(self, uow: UnitOfWork, events: Sequence[Received[Any]], claim: Claim) -> set[str]:
        self.given.append([e.id for e in events])
        claimed = await claim.run(uow.session)
        self.loaded.append([e.id for e in claimed_events(events, claimed)])
        return claimed


def _consumer(database: Database, hook: Hook, handler: Any = record_effect) -> EventConsumer:
    settings = ServiceSettings(name="test", database_url=database.url, consumer_max_attempts=1)
    handlers = {CustomerCreated.event_type: handler}
    return EventConsumer(database, settings, handlers, [TOPIC], ClaimingHook(hook.claim_and_load))


def _duplicates() -> float:
    return REGISTRY.get_sample_value("crm_events_duplicate_total", {"service": "test"}) or 0.0


async def test_the_hook_gets_every_event_and_the_batch_applies_only_what_its_claim_took(database: Database) -> None:
    hook = Hook()
    consumer = _consumer(database, hook)
    before, again, fresh = _event("c-1"), _event("c-2"), _event("c-3")
    await consumer.apply_batch([consumer.decode(_record(before, 0))])
    duplicates = _duplicates()
    batch = [_record(before, 1), _record(again, 2), _record(fresh, 3), _record(again, 4), _record(b"{", 5)]
    await consumer.apply_batch([consumer.decode(r) for r in batch])
    ids = [consumer.decode(r).inbox_id for r in batch]
    assert hook.given[-1] == ids[:4]  # every event that decoded, duplicates included; not the dead letter
    assert hook.loaded[-1] == [ids[1], ids[2]]  # the claimed ones, each once
    assert await _count(database, EFFECTS) == 3  # c-1 once before, c-2 and c-3 now
    assert _duplicates() - duplicates == 2
    async with database.sessions() as session:
        outcomes = dict((await session.execute(select(INBOX.c.event_id, INBOX.c.outcome))).all())
    assert outcomes == {ids[0]: "handled", ids[1]: "handled", ids[2]: "handled", ids[4]: "dead_lettered"}


async def test_a_failed_batch_keeps_no_claim_of_the_hook_and_its_events_apply_one_by_one(database: Database) -> None:
    hook = Hook()
    calls: list[str] = []

    async def fails_once(uow: UnitOfWork, event: Received[Any]) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("boom")
        await record_effect(uow, event)

    consumer = _consumer(database, hook, fails_once)
    await consumer.apply_batch([consumer.decode(_record(_event("c-1"), 0)), consumer.decode(_record(_event("c-2"), 1))])
    assert await _count(database, EFFECTS) == 2
    assert await _count(database, INBOX) == 2
    assert len(hook.given) == 1  # the batch; the retries one by one claim on their own
