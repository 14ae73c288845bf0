"""How long one bulk request holds its process's event loop: ``python -m bench.bulk_turns --rows 2000``.

In `make run`'s layout a service's API, relay and consumer share one event loop, so a consumer's answered
query waits until the request in progress gives the loop up. This posts POST /interactions/bulk bodies of
--rows rows (purchases, complaints, surveys of seeded customers) into the interaction service's app in this
process (SQLite, a temporary file) while another task does nothing but wait for its turn, and prints each
request's wall and CPU time, the turns the other task got, and the longest holds (the gaps between its
turns, in CPU ms of this process: on a shared machine the wall time of a hold grows with the load) with
where in the request (CPU ms from its start) they began. The process's startup objects are frozen out of
the garbage collector's view first, as servicekit.runner does. --profile: cProfile of one more request,
the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from bench.write_path import call
from servicekit.service import API, create_app
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

CUSTOMERS = 700


def body(rows: int, first: int) -> bytes:
    """A bulk body: 7 purchases, 2 complaints and a survey in every 10 rows, new external ids."""
    items = []
    for number in range(first, first + rows):
        row: dict[str, Any] = {
            "customer_id": f"c-{number % CUSTOMERS}",
            "occurred_at": "2025-01-01T00:00:00Z",
            "external_id": f"bulk-{number}",
        }
        kind = number % 10
        if kind < 7:
            row |= {"type": "purchase", "amount": "10.00", "currency": "USD"}
        elif kind < 9:
            row |= {"type": "complaint", "severity": "high", "category": "billing"}
        else:
            row |= {"type": "survey", "survey": "nps", "score": 7}
        items.append(row)
    return orjson.dumps({"rows": items})


async def held(app: Any, payload: bytes) -> tuple[float, float, list[tuple[float, float]]]:
    """One request: its wall and CPU seconds and, for each turn of the waiting task, (CPU seconds the loop
    was held, CPU seconds into the request when the hold began)."""
    gaps: list[tuple[float, float]] = []
    running = True

    async def other() -> None:
        while running:
            before = time.process_time()
            await asyncio.sleep(0)
            gaps.append((time.process_time() - before, before))

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    started, cpu = time.perf_counter(), time.process_time()
    status, answer = await call(app, "/interactions/bulk", payload)
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    running = False
    await task
    assert status == 200, answer[:500]
    # A hold that began just before the request counts from the request's start.
    return wall, cpu_s, [(at + gap - max(at, cpu), max(at - cpu, 0.0)) for gap, at in gaps if at + gap > cpu]


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bulk-turns-"))
    app = create_app(SPEC, InteractionSettings(database_url=f"sqlite+aiosqlite:///{folder / 'i.db'}"), roles=(API,))
    database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = datetime.now(UTC)
        known = [{"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)]
        await conn.execute(insert(KnownCustomer.__table__), known)  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app):
        await held(app, body(50, 10**8))  # warm: compiled statements, caches
        gc.collect()
        gc.freeze()
        for repeat in range(args.repeats):
            wall, cpu, gaps = await held(app, body(args.rows, repeat * args.rows))
            holds = sorted((gap * 1000 for gap, _ in gaps), reverse=True)
            longest = sorted(gaps, reverse=True)[:5]
            print(
                f"{args.rows} rows: {wall * 1000:5.0f} ms ({cpu * 1000:4.0f} CPU), {len(gaps):3} turns, longest hold "
                f"{holds[0]:5.1f} ms, "
                f"median {statistics.median(holds):5.2f} ms, held over 5 ms {sum(h for h in holds if h > 5):6.0f} ms; "
                "top (ms at ms): " + ", ".join(f"{g * 1000:.1f}@{at * 1000:.0f}" for g, at in longest)
            )
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await held(app, body(args.rows, 10**7))
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="rows per request (crm import's chunk size)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
