"""SQLite's write lock under a steady rate: ``python -m bench.sqlite_queue`` (no broker, no PostgreSQL).

The interaction service's API on a SQLite file (as `make run` has it), in this process, takes single
POST /interactions open loop at ``--rate`` for ``--seconds`` (request n is due at start + n/rate; its latency
counts from then), while a relay-like loop beside it marks outbox rows published every 10 ms in a
transaction of its own, as the relay in the same process does. Every transaction on SQLite takes the
file's write lock (BEGIN IMMEDIATE). Two arrangements, alternated ``--rounds`` times:

* ``busy handler``: transactions that find the file locked wait in SQLite's busy handler (it sleeps 1, 2,
  5 ... 100 ms between tries in the connection's thread and is not woken when the lock frees): the
  platform before servicekit.sqlite's queue;
* ``queue``: they queue on the process's lock for the file in the event loop and start the moment the
  holder commits (servicekit.sqlite.TransactionQueue), as the platform runs now.

Prints p50, p99 and max latency per round with the load average: on a shared machine the latencies move
with it, so compare the rounds next to each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, text

from bench.pipeline import percentile
from bench.write_path import call, interaction
from servicekit import sqlite
from servicekit.service import API, create_app
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

CUSTOMERS = 1000
MARK = text(
    "UPDATE outbox SET published_at = CURRENT_TIMESTAMP"
    " WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL LIMIT 100)"
)


def make_app(path: Path, queue: bool) -> Any:
    settings = InteractionSettings(database_url=f"sqlite+aiosqlite:///{path}")
    if queue:
        return create_app(SPEC, settings, roles=(API,))
    made = sqlite.TransactionQueue
    sqlite.TransactionQueue = lambda: None  # type: ignore[assignment,misc]
    try:
        return create_app(SPEC, settings, roles=(API,))
    finally:
        sqlite.TransactionQueue = made  # type: ignore[misc]


async def one_round(queue: bool, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        app = make_app(Path(folder) / "interaction.db", queue)
        database = app.state.database
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            now = datetime.now(UTC)
            rows = [
                {"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)
            ]
            await conn.execute(insert(KnownCustomer.__table__), rows)  # type: ignore[attr-defined]
        latencies: list[float] = []
        load_before = os.getloadavg()[0]
        async with app.router.lifespan_context(app):
            done = asyncio.Event()

            async def relay_like() -> None:
                while not done.is_set():
                    async with database.autocommit() as conn:
                        await conn.execute(MARK)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 0.01)

            async def post(n: int, due: float) -> None:
                status, body = await call(app, "/interactions", orjson.dumps(interaction(f"c-{n % CUSTOMERS}", n)))
                assert status == 201, body
                latencies.append((time.monotonic() - due) * 1000)

            marker = asyncio.create_task(relay_like())
            posts = []
            start = time.monotonic() + 0.05
            for n in range(int(rate * seconds)):
                due = start + n / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                posts.append(asyncio.create_task(post(n, due)))
            await asyncio.gather(*posts)
            done.set()
            await marker
        await database.dispose()
    return {
        "arrangement": "queue" if queue else "busy handler",
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}",
    }


async def main_async(args: argparse.Namespace) -> None:
    print("| round | arrangement | p50 ms | p99 ms | max ms | load (1 min) |\n|---|---|---:|---:|---:|---|")
    for n in range(1, args.rounds + 1):
        for queue in (False, True):
            r = await one_round(queue, args.rate, args.seconds)
            print(
                f"| {n} | {r['arrangement']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['load']} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_queue", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="posts per second")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds (busy handler, then queue)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
