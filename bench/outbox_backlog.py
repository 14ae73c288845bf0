"""What the relay's backlog gauge costs PostgreSQL as the backlog grows: ``python -m bench.outbox_backlog``.

A private PostgreSQL with the interaction service's schema; the outbox is filled to each size in
``--backlogs`` (unpublished rows, plus as many published ones, as the 24 hours of retention keep them), and
at each size two queries are timed, alternated, ``--repeats`` times each:

- *count all*: ``count(*)`` and ``min(created_at)`` over every unpublished row (the gauge before this pass);
- *capped*: ``OutboxRelay.backlog()``: unpublished rows counted up to 100,000 through the partial index,
  and the oldest's age from the lowest id.

It prints each one's wall time per call (p50 and p95, ms; the server's time dominates) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select, text

from bench.batch_memory import private_store
from servicekit.db import Database
from servicekit.outbox.relay import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX

SERVICE = "interaction"
_FILL = text(
    "INSERT INTO outbox (topic, key, payload, headers, created_at, published_at)"
    " SELECT 'crm.interaction.v1', 'c' || i, '\\x00'::bytea, '[]'::json,"
    " now() - interval '1 hour' + i * interval '1 ms', CASE WHEN :published THEN now() END"
    " FROM generate_series(1, :n) AS i"
)


async def _timed(call: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        times.append(1000 * (time.perf_counter() - started))
    return times


def _p(times: list[float], q: float) -> float:
    return sorted(times)[min(len(times) - 1, int(q * len(times)))]


async def measure(url: str, backlogs: list[int], repeats: int) -> None:
    database = Database(url)
    relay = OutboxRelay(database, ServiceSettings(name=SERVICE, database_url=url))
    count_all = select(func.count(), func.min(OUTBOX.c.created_at)).where(OUTBOX.c.published_at.is_(None))

    async def old() -> object:
        async with database.sessions() as session:
            return (await session.execute(count_all)).one()

    print("| unpublished rows | count all p50 / p95 ms | capped p50 / p95 ms | count all / capped (p50) |")
    print("|---:|---:|---:|---:|")
    filled = 0
    for size in backlogs:
        async with database.transaction() as session:
            for published in (True, False):
                await session.execute(_FILL, {"n": size - filled, "published": published})
        async with database.sessions() as session:
            await session.execute(text("ANALYZE outbox"))
        filled = size
        assert (await relay.backlog(cap=size + 1))[0] == size
        olds, news = [], []
        for _ in range(2):  # alternated halves
            olds += await _timed(old, repeats // 2)
            news += await _timed(relay.backlog, repeats // 2)
        ratio = statistics.median(olds) / statistics.median(news)
        print(
            f"| {size:,} | {_p(olds, 0.5):.2f} / {_p(olds, 0.95):.2f} | {_p(news, 0.5):.2f} / {_p(news, 0.95):.2f}"
            f" | {ratio:.1f}x |",
            flush=True,
        )
    await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_backlog", description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", default="1000,100000,1000000", help="unpublished rows, comma-separated")
    parser.add_argument("--repeats", type=int, default=20, help="calls of each query per size")
    parser.add_argument("--pg-port", type=int, default=55477, help="port of the private PostgreSQL server")
    args = parser.parse_args(argv)
    with private_store(SERVICE, args.pg_port) as url:
        sizes = sorted(int(x) for x in args.backlogs.split(",") if x)
        asyncio.run(measure(url, sizes, args.repeats))


if __name__ == "__main__":
    main()
