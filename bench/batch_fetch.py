"""bench.batch_arenas through a real broker: ``python -m bench.batch_fetch [--service retention] --kafka-port N``.

The same cycles (a trickle of tiny polls at zero lag, then a lag burst) and the same figures after each cycle
(pymalloc's held arenas against its live objects, RSS), but the records go through Kafka and the service's
own consumer loop (`EventConsumer.run`: aiokafka's fetcher, getmany, decode, apply_batch, offset commits), as
in the soak. A child process produces (so the producer's memory is not counted): for a tick, --small records
and the bench waits until they are applied; for a burst, --burst records at once, which the consumer then
reads thousands behind. The topics are the platform's, on a broker of the bench's own (--kafka-port; the
bench creates them), so use a private broker. PostgreSQL is private as in bench.batch_arenas (--pg-port).

    .venv/bin/python -m bench.batch_fetch --kafka-port 32200 --pg-port 32252 [--cycles 12] [--warm-cycles 3]
        [--small 2] [--small-polls 40] [--burst 3000] [--trace-top 15]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

from bench.batch_arenas import module_containers, print_grown, print_rows, records_forever, where
from bench.batch_memory import private_store
from bench.consumer_path import CUSTOMERS, SERVICES, _record, service_consumer
from bench.infra import ensure_topic
from contracts.customer import CustomerCreated
from servicekit.inbox.consumer import EventConsumer
from servicekit.kafka import make_producer
from servicekit.runner import freeze_startup_objects
from servicekit.settings import KafkaSettings


def producer_main(bootstrap: str, suffix: str, conn: Connection) -> None:
    """The child: customers first, then on each request (a count) that many more of the stream's records."""
    asyncio.run(_produce(KafkaSettings(bootstrap_servers=bootstrap), suffix, conn))


async def _produce(kafka: KafkaSettings, suffix: str, conn: Connection) -> None:
    from datetime import UTC, datetime, timedelta

    producer = make_producer(kafka, "bench-batch-fetch")
    await producer.start()
    try:
        start = datetime.now(UTC) - timedelta(days=1)
        customers = [
            _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
            for i in range(CUSTOMERS)
        ]
        source = iter(customers)
        stream = records_forever()
        while (count := await asyncio.to_thread(conn.recv)) is not None:
            pending = []
            for _ in range(count):
                record = next(source, None) or next(stream)
                pending.append(
                    await producer.send(record.topic + suffix, record.value, key=record.key, headers=record.headers)
                )
            await producer.flush()
            await asyncio.gather(*pending)
            conn.send(count)
    finally:
        await producer.stop()


class Counted:
    """Counts what the consumer's loop handed to apply_batch (every record of a poll, handled or not)."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.records = 0
        self._apply = consumer.apply_batch
        consumer.apply_batch = self._counted  # type: ignore[method-assign]

    async def _counted(self, deliveries: Any) -> None:
        await self._apply(deliveries)
        self.records += len(deliveries)

    async def reach(self, target: int, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while self.records < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"applied {self.records} of {target}")
            await asyncio.sleep(0.01)


async def cycles(
    args: argparse.Namespace, url: str, conn: Connection
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{args.kafka_port}"
    database, consumer = service_consumer(args.service, url)
    kafka = consumer.settings.consumer_kafka()
    consumer.topics = [topic + args.suffix for topic in consumer.topics]  # this run's own: nothing left over
    for topic in consumer.topics:
        await ensure_topic(kafka, topic)
    counted, sent = Counted(consumer), 0
    loop = asyncio.create_task(consumer.run())

    async def produce(count: int) -> None:
        nonlocal sent
        conn.send(count)
        await asyncio.to_thread(conn.recv)
        sent += count
        await counted.reach(sent)

    async def cycle() -> None:
        for _ in range(args.small_polls):
            await produce(args.small)
        await produce(args.burst)

    await produce(CUSTOMERS)
    if args.gc_freeze:
        freeze_startup_objects()
    for _ in range(args.warm_cycles):
        await cycle()
    started, rows = time.monotonic(), []
    containers: dict[str, int] = {}
    first_applied = counted.records
    for number in range(args.cycles):
        await cycle()
        gc.collect()
        rows.append(where(number, started, counted.records - first_applied))
        print(json.dumps(rows[-1]), flush=True)
        if number == 0:
            containers = module_containers()
            if args.trace_top:
                tracemalloc.start(args.frames)
        elif number == 1 and args.trace_top:
            first_snapshot = tracemalloc.take_snapshot()
    if args.trace_top:
        print_grown(tracemalloc.take_snapshot().compare_to(first_snapshot, "traceback")[: args.trace_top])
        tracemalloc.stop()
    changed = {
        name: (containers.get(name, 0), size)
        for name, size in module_containers().items()
        if size != containers.get(name, 0)
    }
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await database.dispose()
    return rows, changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--warm-cycles", type=int, default=3, help="cycles before the first one reported")
    parser.add_argument("--small", type=int, default=2, help="records produced per tick at zero lag")
    parser.add_argument("--small-polls", type=int, default=40, help="ticks per cycle")
    parser.add_argument("--burst", type=int, default=3000, help="records produced at once per cycle")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false")
    parser.add_argument("--trace-top", type=int, default=0, help="tracemalloc: the N sites grown after cycle 1")
    parser.add_argument("--frames", type=int, default=4, help="frames kept per site with --trace-top")
    parser.add_argument("--pg-port", type=int, default=55477, help="port of the private PostgreSQL server")
    parser.add_argument("--kafka-port", type=int, required=True, help="port of a private Kafka broker")
    args = parser.parse_args(argv)
    args.suffix = f".fetch{int(time.time())}"
    parent, child = multiprocessing.get_context("spawn").Pipe()
    producer = multiprocessing.get_context("spawn").Process(
        target=producer_main, args=(f"127.0.0.1:{args.kafka_port}", args.suffix, child), daemon=True
    )
    producer.start()
    try:
        with private_store(args.service, args.pg_port) as url:
            rows, changed = asyncio.run(cycles(args, url, parent))
        args.small_polls, args.large, args.large_polls, args.prefetch = args.small_polls, args.burst, 1, "aiokafka"
        print_rows(args, rows, changed)
    finally:
        parent.send(None)
        producer.join(30)


if __name__ == "__main__":
    main()
