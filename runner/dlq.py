"""Dead letters: list them, and replay them through their original topic.

    python -m runner.dlq list crm.scoring.v1                      # what is in crm.scoring.v1.dlq
    python -m runner.dlq replay crm.scoring.v1 --consumer retention --dry-run
    python -m runner.dlq replay crm.scoring.v1 --consumer retention --offset 17 --offset 18

A replay re-publishes the original message (its key, body and headers, without the dlq.* ones) on the
original topic, so it goes through the normal path: every consumer group of that topic sees it again and
its inbox skips it unless that group has not applied it. For the group that dead-lettered it (the
dlq.consumer header) the inbox holds the event id with outcome `dead_lettered`, which would skip it too;
the replay deletes that one inbox row first (never a `handled` one), in the group's service database.
So a replay is safe to repeat: once the event is handled, a second replay is a duplicate everywhere.
Fix the cause first (deploy the handler fix, or the data it needed); a replay of an unchanged poison
message is dead-lettered again. See docs/runbooks/CrmDeadLetters.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from sqlalchemy import delete

from contracts.topics import dead_letter
from servicekit.db import Database
from servicekit.kafka import make_producer, topic_partitions
from servicekit.settings import KafkaSettings, ServiceSettings
from servicekit.tables import INBOX

DLQ_HEADER_PREFIX = "dlq."


@dataclass(frozen=True)
class DeadLetter:
    partition: int  # in the .dlq topic
    offset: int  # in the .dlq topic
    origin_topic: str
    origin: str  # topic/partition/offset of the original
    consumer: str  # the consumer group that gave up
    reason: str
    event_id: str | None
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]  # the original's, without dlq.*


def parse(record: ConsumerRecord, dlq_topic: str) -> DeadLetter:
    """A .dlq record as the consumer wrote it (servicekit.inbox.consumer: original headers + dlq.*)."""
    found = {k: v.decode(errors="replace") for k, v in record.headers or () if k.startswith(DLQ_HEADER_PREFIX)}
    original = tuple((k, v) for k, v in record.headers or () if not k.startswith(DLQ_HEADER_PREFIX))
    origin = found.get("dlq.origin", "")
    origin_topic = origin.rsplit("/", 2)[0] if origin.count("/") >= 2 else dlq_topic.removesuffix(".dlq")
    event_id = next((v.decode(errors="replace") for k, v in original if k == "ce_id"), None)
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        origin_topic=origin_topic,
        origin=origin,
        consumer=found.get("dlq.consumer", ""),
        reason=found.get("dlq.reason", ""),
        event_id=event_id,
        key=record.key,
        value=record.value or b"",
        headers=original,
    )


def choose(letters: Sequence[DeadLetter], consumer: str | None, offsets: Sequence[int]) -> list[DeadLetter]:
    """The dead letters a replay takes: of one consumer group if given, and only the given .dlq offsets if any."""
    return [
        letter
        for letter in letters
        if (consumer is None or letter.consumer == consumer) and (not offsets or letter.offset in offsets)
    ]


async def read_all(kafka: KafkaSettings, topic: str) -> list[DeadLetter]:
    """Every record of `<topic>.dlq`, read from the start without a consumer group (nothing is committed)."""
    dlq = dead_letter(topic)
    partitions = await topic_partitions(kafka.bootstrap_servers, dlq)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            letters.extend(parse(r, dlq) for records in batches.values() for r in records)
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    finally:
        await consumer.stop()


def database_url_of(group: str) -> str:
    """The database of the service whose consumer group this is (a service's group is its name)."""
    spec = import_module(f"services.{group}.main").SPEC
    settings: ServiceSettings = spec.settings_cls()
    return settings.database_url


async def forget_dead_letter(database: Database, group: str, event_id: str) -> int:
    """Delete the group's `dead_lettered` inbox row for the event, so the replay is applied, not skipped."""
    async with database.transaction() as session:
        result = await session.execute(
            delete(INBOX).where(
                INBOX.c.consumer == group, INBOX.c.event_id == event_id, INBOX.c.outcome == "dead_lettered"
            )
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def replay(
    kafka: KafkaSettings, letters: Sequence[DeadLetter], *, database_urls: dict[str, str] | None = None
) -> int:
    """Re-publish the dead letters on their original topics; returns how many were sent."""
    databases: dict[str, Database] = {}
    producer = make_producer(kafka, client_id="crm-dlq-replay")
    await producer.start()
    try:
        for letter in letters:
            if letter.event_id and letter.consumer:
                if letter.consumer not in databases:
                    url = (database_urls or {}).get(letter.consumer) or database_url_of(letter.consumer)
                    databases[letter.consumer] = Database(url)
                await forget_dead_letter(databases[letter.consumer], letter.consumer, letter.event_id)
            await producer.send_and_wait(
                letter.origin_topic, value=letter.value, key=letter.key, headers=list(letter.headers)
            )
        return len(letters)
    finally:
        await producer.stop()
        for database in databases.values():
            await database.dispose()


def describe(letter: DeadLetter) -> str:
    return (
        f"dlq offset {letter.partition}/{letter.offset}  origin {letter.origin}  consumer {letter.consumer}  "
        f"event {letter.event_id or '-'}  reason {letter.reason[:200]}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.dlq", description="List or replay dead letters.")
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("topic", help="the original topic, e.g. crm.scoring.v1 (its dead letters: <topic>.dlq)")
    parser.add_argument("--consumer", help="only dead letters of this consumer group (a service name)")
    parser.add_argument("--offset", type=int, action="append", default=[], help="only this .dlq offset (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="replay: show what would be sent, send nothing")
    args = parser.parse_args(argv)
    kafka = KafkaSettings()
    letters = choose(asyncio.run(read_all(kafka, args.topic)), args.consumer, args.offset)
    for letter in letters:
        print(describe(letter))
    if args.command == "list" or args.dry_run:
        print(f"{len(letters)} dead letter(s)", file=sys.stderr)
        return
    if args.consumer is None and not args.offset:
        parser.error("replay needs --consumer or --offset: replaying a whole topic's dead letters is rarely meant")
    sent = asyncio.run(replay(kafka, letters))
    print(f"replayed {sent} dead letter(s) on {args.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
