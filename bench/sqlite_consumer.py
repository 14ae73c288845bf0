"""A consumer's handler path on SQLite, as the embedded default runs it: CPU and statements per interaction.

    .venv/bin/python -m bench.sqlite_consumer [--service retention|scoring] [--interactions 6000]
                                              [--warm 6000] [--batch 20] [--profile]

`bench.consumer_path`'s stream (60 % purchases, 25 % complaints, 15 % NPS answers, each followed by its
score.updated, for 1,000 customers created first) applied through the service's own consumer
(`EventConsumer.apply_batch`: before-batch hook, inbox, outbox) on a SQLite file in a temporary folder,
without Kafka, in batches like the embedded default's polls (at 100 interactions/s a poll every 100 ms
holds about 20 records). The first `--warm` records are not measured. Reported: this process's CPU per
record and per interaction (time.process_time, decoding included, so it holds on a loaded machine),
statements and transactions per batch, and the statements sent most often; `--profile` adds a cProfile
(CPU clock) of the measured span.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.consumer_path import CUSTOMERS, SERVICES, _record, apply, service_consumer, stream
from contracts.customer import CustomerCreated
from servicekit.migrations import upgrade
from servicekit.runner import freeze_startup_objects


def log(message: str) -> None:
    print(f"[sqlite-consumer {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    database, consumer = service_consumer(args.service, url)
    freeze_startup_objects()  # as the service's process does once started (servicekit.runner)
    start = datetime.now(UTC) - timedelta(days=1)
    customers = [
        _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
        for i in range(CUSTOMERS)
    ]
    await apply(consumer, customers, 200)
    records = stream(args.interactions + args.warm // 2)
    warm, measured = records[: args.warm], records[args.warm :]
    log(f"{len(customers)} customers created; warming up on {len(warm)} records")
    await apply(consumer, warm, args.batch)
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, executemany: bool) -> None:
        statements[" ".join(statement.split()[:5])[:60] + (" (many)" if executemany else "")] += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    interactions = sum(1 for r in measured if r.topic == "crm.interaction.v1" and b"interaction.recorded" in r.value)
    log(f"measuring {len(measured)} records ({interactions} interactions) in batches of {args.batch}")
    profile = cProfile.Profile(time.process_time) if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await apply(consumer, measured, args.batch)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    await database.dispose()
    batches = -(-len(measured) // args.batch)
    if profile is not None:
        stats = pstats.Stats(profile).sort_stats("cumulative")
        stats.print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
    return {
        "service": args.service,
        "records": len(measured),
        "interactions": interactions,
        "batch": args.batch,
        "cpu_ms_per_record": round(cpu * 1000 / len(measured), 3),
        "cpu_ms_per_interaction": round(cpu * 1000 / max(interactions, 1), 3),
        "wall_s": round(wall, 2),
        "statements_per_batch": round(sum(statements.values()) / batches, 2),
        "transactions_per_batch": round(statements.get("BEGIN IMMEDIATE", 0) / batches, 2),
        "statements": dict(statements.most_common(args.statements)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_consumer", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--interactions", type=int, default=6000, help="interactions measured (about 2 records each)")
    parser.add_argument("--warm", type=int, default=6000, help="records applied before measuring")
    parser.add_argument("--batch", type=int, default=20, help="records per consumer batch (transaction)")
    parser.add_argument("--statements", type=int, default=12, help="how many of the most frequent statements to list")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile (CPU clock) of the measured span")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sqlite-consumer-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / f'{args.service}.db'}"
        spec = import_module(f"services.{args.service}.main").SPEC
        upgrade(spec.migrations_dir, url, args.service)
        result = asyncio.run(measure(args, url))
    for key, value in result.items():
        if key != "statements":
            print(f"{key}: {value}")
    print("statements sent most often (measured span):")
    for statement, n in result["statements"].items():
        print(f"  {n:6d}  {statement}")


if __name__ == "__main__":
    main()
