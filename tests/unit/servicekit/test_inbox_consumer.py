import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from contracts.customer import CustomerCreated, CustomerUpdated
from servicekit.db import Database
from servicekit.errors import is_transient
from servicekit.events import CloudEvent, Received
from servicekit.inbox import EventConsumer, PoisonEvent
from servicekit.settings import ServiceSettings
from servicekit.tables import INBOX, OUTBOX
from servicekit.unit_of_work import UnitOfWork
from tests.unit.servicekit.conftest import EFFECTS

TOPIC = "crm.customer.v1"


def _record(value: bytes, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"c-1",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value),
        headers=[],
    )


def _event(customer_id: str = "c-1") -> bytes:
    data = CustomerCreated(customer_id=customer_id, kind="person", status="active", created_at=datetime.now(UTC))
    return CloudEvent.wrap(data, source="/crm/customer").to_json()


async def record_effect(uow: UnitOfWork, event: Received[Any]) -> None:
    await uow.session.execute(insert(EFFECTS).values(event_id=event.id))


def _consumer(database: Database, handler=record_effect, attempts: int = 2) -> EventConsumer:
    settings = ServiceSettings(
        name="test", database_url=database.url, consumer_max_attempts=attempts, consumer_retry_backoff_s=0
    )
    return EventConsumer(database, settings, {CustomerCreated.event_type: handler}, [TOPIC])


async def _count(database: Database, table) -> int:
    async with database.sessions() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar_one()


async def _dead_letters(database: Database) -> list[Any]:
    async with database.sessions() as session:
        return (await session.execute(select(OUTBOX).where(OUTBOX.c.topic == f"{TOPIC}.dlq"))).all()


async def test_a_duplicate_delivery_has_no_second_effect(database: Database):
    consumer = _consumer(database)
    raw = _event()
    await consumer.apply_batch([consumer.decode(_record(raw, 0))])
    await consumer.apply_batch([consumer.decode(_record(raw, 0))])  # redelivered after a crash
    await consumer.apply_batch([consumer.decode(_record(raw, 7))])  # replayed at another offset
    assert await _count(database, EFFECTS) == 1


async def test_the_same_event_twice_in_one_batch_is_applied_once(database: Database):
    consumer = _consumer(database)
    raw = _event()
    await consumer.apply_batch([consumer.decode(_record(raw, 0)), consumer.decode(_record(raw, 1))])
    assert await _count(database, EFFECTS) == 1


async def test_a_batch_claims_its_event_ids_in_one_statement_and_a_failed_batch_keeps_no_claim(database: Database):
    consumer = _consumer(database)
    first, second = _event("c-1"), _event("c-2")
    await consumer.apply_batch([consumer.decode(_record(first, 0))])
    statements: list[str] = []
    event.listen(database.engine.sync_engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))
    # One old id, one new one twice: one statement touches the inbox, and only the new id is applied.
    batch = [_record(first, 0), _record(second, 1), _record(second, 2)]
    await consumer.apply_batch([consumer.decode(r) for r in batch])
    assert len([sql for sql in statements if "inbox" in sql]) == 1
    assert await _count(database, EFFECTS) == 2
    assert await _count(database, INBOX) == 2

    async def failing(uow: UnitOfWork, event: Received[Any]) -> None:
        raise RuntimeError("bug")

    broken = _consumer(database, handler=failing, attempts=1)
    await broken.apply_batch([broken.decode(_record(_event("c-3"), 3))])
    async with database.sessions() as session:
        outcomes = (await session.execute(select(INBOX.c.outcome).order_by(INBOX.c.handled_at))).scalars().all()
    assert outcomes == ["handled", "handled", "dead_lettered"]  # the failed claim rolled back, then dead-lettered
    assert len(await _dead_letters(database)) == 1


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_duplicates_in_a_batch_are_counted_as_duplicates_not_as_handled(database: Database):
    consumer = _consumer(database)
    raw, other = _event("c-1"), _event("c-2")
    handled = {"service": "test", "event_type": CustomerCreated.event_type}
    handled_before = _metric("crm_events_handled_total", **handled)
    duplicates_before = _metric("crm_events_duplicate_total", service="test")
    await consumer.apply_batch([consumer.decode(_record(raw, 0)), consumer.decode(_record(raw, 1))])
    # A batch mixing a new event with one already in the inbox.
    await consumer.apply_batch([consumer.decode(_record(raw, 2)), consumer.decode(_record(other, 3))])
    assert _metric("crm_events_handled_total", **handled) - handled_before == 2
    assert _metric("crm_events_duplicate_total", service="test") - duplicates_before == 2


async def test_a_message_that_is_not_an_envelope_goes_to_the_dead_letter_topic_and_the_rest_is_applied(
    database: Database,
):
    consumer = _consumer(database)
    batch = [_record(_event("a"), 0), _record(b"{not json", 1), _record(_event("b"), 2)]
    await consumer.apply_batch([consumer.decode(r) for r in batch])
    assert await _count(database, EFFECTS) == 2
    [dead] = await _dead_letters(database)
    assert dead.payload == b"{not json"
    headers = dict(dead.headers)
    assert headers["dlq.origin"] == f"{TOPIC}/0/1"
    assert "not a CloudEvents JSON envelope" in headers["dlq.reason"]
    assert headers["dlq.consumer"] == "test"


async def test_a_replayed_poison_message_is_not_dead_lettered_twice(database: Database):
    consumer = _consumer(database)
    await consumer.apply_batch([consumer.decode(_record(b"garbage", 5))])
    await consumer.apply_batch([consumer.decode(_record(b"garbage", 5))])
    assert len(await _dead_letters(database)) == 1


async def test_event_data_that_breaks_its_contract_is_dead_lettered_with_the_validation_error(database: Database):
    consumer = _consumer(database)
    broken = CloudEvent(source="/crm/customer", type=CustomerCreated.event_type, data={"customer_id": "c"})
    await consumer.apply_batch([consumer.decode(_record(broken.to_json()))])
    [dead] = await _dead_letters(database)
    assert "does not match its contract" in dict(dead.headers)["dlq.reason"]
    assert await _count(database, EFFECTS) == 0


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered_and_its_batch_mates_still_apply(
    database: Database,
):
    calls: list[str] = []

    async def flaky(uow: UnitOfWork, event: Received[Any]) -> None:
        calls.append(event.data.customer_id)
        if event.data.customer_id == "bad":
            raise ValueError("cannot apply")
        await record_effect(uow, event)

    consumer = _consumer(database, flaky, attempts=3)
    await consumer.apply_batch([consumer.decode(_record(_event(c), i)) for i, c in enumerate(["a", "bad", "b"])])
    assert await _count(database, EFFECTS) == 2
    assert calls.count("bad") == 1 + 3  # once in the batch, then three single attempts
    [dead] = await _dead_letters(database)
    assert "handler failed after 3 attempt(s): cannot apply" in dict(dead.headers)["dlq.reason"]


async def test_a_poison_verdict_is_dead_lettered_without_retries(database: Database):
    calls: list[int] = []

    async def refuse(uow: UnitOfWork, event: Received[Any]) -> None:
        calls.append(1)
        raise PoisonEvent("unknown currency")

    consumer = _consumer(database, refuse, attempts=5)
    await consumer.apply_batch([consumer.decode(_record(_event()))])
    assert len(calls) == 2  # the batch attempt and one single attempt
    assert len(await _dead_letters(database)) == 1


async def test_database_outages_are_retried_never_dead_lettered(database: Database):
    async def unreachable(uow: UnitOfWork, event: Received[Any]) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("db down"))

    consumer = _consumer(database, unreachable)
    with pytest.raises(OperationalError):
        await consumer.apply_batch([consumer.decode(_record(_event()))])
    assert await _dead_letters(database) == []
    assert await _count(database, INBOX) == 0


def test_connection_errors_count_as_transient_and_bugs_do_not():
    assert is_transient(ConnectionRefusedError())
    assert is_transient(OperationalError("x", {}, Exception()))
    assert not is_transient(ValueError())
    assert not is_transient(KeyError())


async def test_events_of_types_without_a_handler_are_skipped_silently(database: Database):
    consumer = _consumer(database)
    other = CloudEvent(source="/crm/customer", type="customer.erased", data={"customer_id": "c"})
    await consumer.apply_batch([consumer.decode(_record(other.to_json()))])
    assert await _count(database, INBOX) == 0
    assert await _dead_letters(database) == []


async def test_an_event_whose_ce_type_header_names_another_consumers_type_is_skipped_unread(database: Database):
    consumer = _consumer(database)
    # The body is never parsed: the CloudEvents header already says the event is for another consumer.
    record = dataclasses.replace(_record(b"not json at all"), headers=[("ce_type", b"customer.erased")])
    await consumer.apply_batch([consumer.decode(record)])
    assert await _count(database, INBOX) == 0
    assert await _dead_letters(database) == []
    assert await _count(database, EFFECTS) == 0


async def test_an_event_whose_ce_type_header_names_a_handled_type_is_parsed_and_applied(database: Database):
    consumer = _consumer(database)
    record = dataclasses.replace(_record(_event()), headers=[("ce_type", b"customer.created")])
    await consumer.apply_batch([consumer.decode(record)])
    assert await _count(database, EFFECTS) == 1
    assert await _count(database, INBOX) == 1


def test_an_exhausted_connection_pool_counts_as_transient():
    # Overload (every pooled connection busy for pool_timeout) is retried or answered 503, never a 500.
    assert is_transient(PoolTimeout("QueuePool limit of size 10 overflow 10 reached"))


class _FakeKafka:
    """The two calls _handle_poll makes on an AIOKafkaConsumer: commit and highwater."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.commits: list[dict[TopicPartition, int]] = []
        self.effects_at_commit: list[int] = []

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.effects_at_commit.append(await _count(self.database, EFFECTS))
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def highwater(self, tp: TopicPartition) -> int:
        return 100


def _on(partition: int, offset: int, value: bytes) -> ConsumerRecord:
    return dataclasses.replace(_record(value, offset), partition=partition)


async def test_one_poll_over_several_partitions_is_applied_then_committed_in_one_offset_commit(database: Database):
    consumer = _consumer(database)
    kafka = _FakeKafka(database)
    poll = {
        TopicPartition(TOPIC, 0): [_on(0, 4, _event("a")), _on(0, 5, _event("b"))],
        TopicPartition(TOPIC, 3): [_on(3, 9, _event("c"))],
        TopicPartition(TOPIC, 5): [],
    }
    await consumer._handle_poll(kafka, poll)  # type: ignore[arg-type]
    assert kafka.commits == [{TopicPartition(TOPIC, 0): 6, TopicPartition(TOPIC, 3): 10}]
    assert kafka.effects_at_commit == [3]  # every effect was stored before any offset moved
    assert await _count(database, INBOX) == 3


async def test_a_failing_event_in_a_poll_leaves_the_other_partitions_applied_once(database: Database):
    async def fail_on_bad(uow: UnitOfWork, event: Received[Any]) -> None:
        if event.data.customer_id == "bad":
            raise RuntimeError("handler bug")
        await record_effect(uow, event)

    consumer = _consumer(database, handler=fail_on_bad)
    kafka = _FakeKafka(database)
    poll = {
        TopicPartition(TOPIC, 1): [_on(1, 0, _event("a")), _on(1, 1, _event("bad"))],
        TopicPartition(TOPIC, 2): [_on(2, 0, _event("b"))],
    }
    await consumer._handle_poll(kafka, poll)  # type: ignore[arg-type]
    assert await _count(database, EFFECTS) == 2
    assert len(await _dead_letters(database)) == 1
    assert kafka.commits == [{TopicPartition(TOPIC, 1): 2, TopicPartition(TOPIC, 2): 1}]


def _updated(customer_id: str = "c-1") -> bytes:
    """An event type the test consumer has no handler for (another service's on a shared topic)."""
    data = CustomerUpdated(customer_id=customer_id, version=2, changed=["segment"], segment="smb")
    return CloudEvent.wrap(data, source="/crm/customer").to_json()


async def test_offsets_are_committed_at_most_once_per_interval_and_never_before_their_effects(database: Database):
    consumer = _consumer(database)
    consumer.settings.consumer_commit_interval_s = 3600
    kafka = _FakeKafka(database)
    tp = TopicPartition(TOPIC, 0)
    await consumer._handle_poll(kafka, {tp: [_on(0, 0, _event("a"))]})  # type: ignore[arg-type]
    await consumer._handle_poll(kafka, {tp: [_on(0, 1, _event("b")), _on(0, 2, _event("c"))]})  # type: ignore[arg-type]
    assert kafka.commits == [{tp: 1}]  # the first poll commits; the next one waits for the interval
    await consumer._commit(kafka)  # type: ignore[arg-type]  # due, or the consumer stops
    assert kafka.commits == [{tp: 1}, {tp: 3}]
    assert kafka.effects_at_commit == [1, 3]

    every_poll = _consumer(database)
    every_poll.settings.consumer_commit_interval_s = 0
    kafka = _FakeKafka(database)
    for offset in (3, 4):
        await every_poll._handle_poll(kafka, {tp: [_on(0, offset, _event(f"d{offset}"))]})  # type: ignore[arg-type]
    assert kafka.commits == [{tp: 4}, {tp: 5}]


async def test_a_poll_of_events_nobody_here_handles_opens_no_transaction_but_moves_the_offset(database: Database):
    consumer = _consumer(database)
    kafka = _FakeKafka(database)
    statements: list[str] = []
    event.listen(database.engine.sync_engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))
    tp = TopicPartition(TOPIC, 0)
    await consumer._handle_poll(kafka, {tp: [_on(0, 0, _updated("a")), _on(0, 1, _updated("b"))]})  # type: ignore[arg-type]
    assert [sql for sql in statements if "inbox" in sql] == []  # (the fake broker's own count is the rest)
    assert kafka.commits == [{tp: 2}]
    await consumer._handle_poll(kafka, {tp: [_on(0, 2, _updated("c")), _on(0, 3, _event("d"))]})  # type: ignore[arg-type]
    await consumer._commit(kafka)  # type: ignore[arg-type]
    assert await _count(database, EFFECTS) == 1 and await _count(database, INBOX) == 1
