"""A changed look-back: the metrics' read model rebuilt in one transaction against in chunks of customers.

    .venv/bin/python -m bench.metric_rebuild [--customers 5000] [--chunk 1000] [--rounds 3]

On a temp-file SQLite store (no infrastructure, no ports) seeded with random facts (replica rows, status
changes, alerts), alternately per round: ``one-shot`` (read_model.rebuild, the former way: every row deleted
and written again in one transaction) and ``chunked`` (start_rebuild, then rebuild_step until done: one
transaction per chunk, only the rows that differ written). The look-back alternates between 180 and 20 days,
so each run really changes the warned rows. Prints, per way: CPU ms per 1,000 customers (this process), SQL
statements, rows written (metric_facts inserted + deleted) and the longest transaction's CPU ms (what an
event's transaction may wait for), as medians over the rounds, and chunked / one-shot ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from servicekit.db import Database
from services.retention.alerts.models import Alert
from services.retention.main import SPEC
from services.retention.outcomes import read_model
from services.retention.replica.models import Customer, StatusChange

T0 = datetime(2026, 6, 1, tzinfo=UTC)
LOOKBACKS = (timedelta(days=20), timedelta(days=180))


async def seed(database: Database, customers: int) -> None:
    rng = random.Random(1)
    rows: list[Any] = []
    for n in range(customers):
        i = f"c-{n:07d}"

        def day() -> datetime:
            return T0 + timedelta(days=rng.randint(-300, 60), hours=rng.randint(0, 23))

        rows.append(Customer(customer_id=i, segment=rng.choice(("smb", "enterprise")), tier="gold", first_seen=day()))
        for k in range(rng.choice((0, 1, 1, 2))):
            rows.append(
                StatusChange(event_id=f"{i}-{k}", customer_id=i, status=rng.choice(("churned", "active")), at=day())
            )
        for _ in range(rng.choice((0, 1, 2))):
            at = day()
            rows.append(
                Alert(customer_id=i, reason="complaint", severity="medium", status="resolved",
                      first_triggered_at=at, last_triggered_at=at, control=rng.random() < 0.2)
            )  # fmt: skip
    async with database.transaction() as session:
        session.add_all(rows)
    async with database.transaction() as session:
        await session.run_sync(lambda s: read_model.rebuild(s.connection(), LOOKBACKS[1]))


class Counter:
    def __init__(self, database: Database) -> None:
        self.statements = 0
        self.rows = 0
        event.listen(database.engine.sync_engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        self.statements += 1
        if statement.lstrip().upper().startswith(("INSERT INTO METRIC_FACTS", "DELETE FROM METRIC_FACTS")):
            self.rows += max(cursor.rowcount, 0)


async def transaction(database: Database, work: Callable[[Any], Any]) -> tuple[Any, float]:
    cpu = time.process_time()
    async with database.transaction() as session:
        result = await session.run_sync(lambda s: work(s.connection()))
    return result, (time.process_time() - cpu) * 1000


async def one_shot(database: Database, lookback: timedelta, chunk: int) -> list[float]:
    _, ms = await transaction(database, lambda c: read_model.rebuild(c, lookback))
    return [ms]


async def chunked(database: Database, lookback: timedelta, chunk: int) -> list[float]:
    _, first = await transaction(database, lambda c: read_model.start_rebuild(c, lookback))
    times = [first]
    while True:
        going, ms = await transaction(database, lambda c: read_model.rebuild_step(c, chunk))
        times.append(ms)
        if not going:
            return times


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'rebuild.db'}")
        async with database.engine.begin() as conn:
            await conn.run_sync(SPEC.metadata.create_all)
        await seed(database, args.customers)
        counter = Counter(database)
        ways: dict[str, Callable[[Database, timedelta, int], Awaitable[list[float]]]] = {
            "one-shot": one_shot,
            "chunked": chunked,
        }
        results: dict[str, list[tuple[float, int, int, float]]] = {name: [] for name in ways}
        k = 0
        for _ in range(args.rounds):
            for name, way in ways.items():
                lookback = LOOKBACKS[k % 2]
                k += 1
                counter.statements = counter.rows = 0
                times = await way(database, lookback, args.chunk)
                results[name].append((sum(times), counter.statements, counter.rows, max(times)))
        await database.dispose()
    per = args.customers / 1000
    medians = {name: [statistics.median(r[j] for r in rows) for j in range(4)] for name, rows in results.items()}
    print(f"{args.customers:,} customers, chunk {args.chunk:,}, {args.rounds} rounds (medians)")
    for name, (cpu, statements, rows, longest) in medians.items():
        print(
            f"  {name:9s} CPU {cpu / per:8.1f} ms/1k customers  statements {statements:7.0f}  "
            f"rows written {rows:9.0f}  longest transaction {longest:8.1f} ms CPU"
        )
    old, new = medians["one-shot"], medians["chunked"]
    print(
        f"  chunked / one-shot: CPU {new[0] / old[0]:.2f}, statements {new[1] / old[1]:.2f}, "
        f"rows written {new[2] / max(old[2], 1):.3f}, longest transaction {new[3] / old[3]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=read_model.REBUILD_CHUNK)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
