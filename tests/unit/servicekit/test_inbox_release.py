"""A batch lets go of its decoded events once every handler has run, before its commit's writes; whatever
fails after that, each record is decoded again for its retry alone, with the same outcome as before."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.customer import CustomerCreated
from servicekit.db import Database, hold_until_commit
from servicekit.events import CloudEvent, Received
from servicekit.inbox import EventConsumer, PoisonEvent
from servicekit.settings import ServiceSettings
from servicekit.tables import INBOX, OUTBOX
from servicekit.unit_of_work import UnitOfWork
from tests.unit.servicekit.conftest import EFFECTS
from tests.unit.servicekit.test_inbox_consumer import TOPIC, _record, record_effect


def _event(customer_id: str) -> tuple[str, bytes]:
    data = CustomerCreated(customer_id=customer_id, kind="person", status="active", created_at=datetime.now(UTC))
    envelope = CloudEvent.wrap(data, source="/crm/customer")
    return envelope.id, envelope.to_json()


def _consumer(database: Database, handler: Any, attempts: int = 2) -> EventConsumer:
    settings = ServiceSettings(
        name="test", database_url=database.url, consumer_max_attempts=attempts, consumer_retry_backoff_s=0
    )
    return EventConsumer(database, settings, {CustomerCreated.event_type: handler}, [TOPIC])


def _poll(customers: list[str]) -> tuple[list[str], list[ConsumerRecord]]:
    events = [_event(c) for c in customers]
    return [i for i, _ in events], [_record(raw, offset) for offset, (_, raw) in enumerate(events)]


async def _effects(database: Database) -> Counter[str]:
    async with database.sessions() as session:
        return Counter((await session.execute(select(EFFECTS.c.event_id))).scalars())


async def _inbox(database: Database) -> dict[str, str]:
    async with database.sessions() as session:
        return {row.event_id: row.outcome for row in await session.execute(select(INBOX.c.event_id, INBOX.c.outcome))}


async def _dead_letter_reasons(database: Database) -> list[str]:
    async with database.sessions() as session:
        rows = (await session.execute(select(OUTBOX).where(OUTBOX.c.topic == f"{TOPIC}.dlq"))).all()
    return [dict(row.headers)["dlq.reason"] for row in rows]


async def test_a_committed_batch_keeps_none_of_its_decoded_events(database: Database):
    ids, records = _poll(["a", "b", "c"])
    consumer = _consumer(database, record_effect)
    deliveries = [consumer.decode(r) for r in records]

    await consumer.apply_batch(deliveries)

    assert all(d.event is None and d.released for d in deliveries)
    assert await _effects(database) == Counter(ids)


async def test_a_poison_record_late_in_the_poll_is_dead_lettered_and_the_records_before_it_apply_once(
    database: Database,
):
    async def refuse_bad(uow: UnitOfWork, event: Received[Any]) -> None:
        if event.data.customer_id == "bad":
            raise PoisonEvent("unknown currency")
        await record_effect(uow, event)

    ids, records = _poll(["a", "b", "bad"])
    consumer = _consumer(database, refuse_bad)

    await consumer.apply_batch([consumer.decode(r) for r in records])

    assert await _effects(database) == Counter(ids[:2])  # each good record's effect once
    assert await _inbox(database) == {ids[0]: "handled", ids[1]: "handled", ids[2]: "dead_lettered"}
    assert await _dead_letter_reasons(database) == ["handler failed after 1 attempt(s): unknown currency"]


async def test_a_commit_failing_after_the_release_retries_each_record_decoded_again(database: Database):
    """The events are let go before the commit's writes; one of those writes fails for one record only."""
    seen: list[str] = []

    def write(session: Session, rows: list[dict[str, Any]]) -> None:
        if any(row["customer_id"] == "bad" for row in rows):
            raise ValueError("row refused at commit")

    async def hold_a_row(uow: UnitOfWork, event: Received[Any]) -> None:
        seen.append(event.data.customer_id)
        await record_effect(uow, event)
        hold_until_commit(uow.session, "test:rows", [{"customer_id": event.data.customer_id}], write)

    ids, records = _poll(["a", "b", "bad"])
    consumer = _consumer(database, hold_a_row, attempts=2)

    await consumer.apply_batch([consumer.decode(r) for r in records])

    # The batch, then each record alone: the bad one twice (its attempts), every one with its event decoded.
    assert seen == ["a", "b", "bad", "a", "b", "bad", "bad"]
    assert await _effects(database) == Counter(ids[:2])
    assert await _inbox(database) == {ids[0]: "handled", ids[1]: "handled", ids[2]: "dead_lettered"}
    assert await _dead_letter_reasons(database) == ["handler failed after 2 attempt(s): row refused at commit"]
