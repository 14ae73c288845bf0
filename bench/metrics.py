"""/retention/metrics benchmark: the read model (monthly totals) against the exact computation from the facts,
called alternately on the same PostgreSQL store, per period and grouping.

    .venv/bin/python -m bench.metrics [--customers 100000] [--interactions 100000] [--rounds 10] [--no-seed] [--keep]

Seeds retention's store as bench/reports.py does (customer replica, latest scores, churn facts, one alert per
two customers) plus the status history the metrics read (a change to active per customer at the start of the
data, one to churned per churn fact), then builds the read model as the migration backfills it (timed).
``--interactions`` only sizes the fact events, which the metrics never read. Its own PostgreSQL port and
state directory (.state/bench-metrics): no shared lock needed.

Each round calls every case once through the exact path and once through the read model, alternating, and
checks that both give the same answer. Prints p50 / p95 of each, the statements each call ran, and the peak
of Python memory (tracemalloc) of one call of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import tracemalloc
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, text

from bench.infra import Infra
from bench.reports import STATUS_HISTORY_SQL, T_START, app_for, measure, percentile, seed_retention
from servicekit.db import Database
from servicekit.settings import REPO_ROOT
from services.retention.main import SPEC
from services.retention.outcomes import read_model, service

INFRA = Infra(REPO_ROOT / ".state" / "bench-metrics", kafka_port=19892, pg_port=55651, port_offset=24900)
LOOKBACK = timedelta(days=180)


def _at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


# (name, from, to, group_by); the data spans 2024-10-01 to 2026-10-01.
CASES: list[tuple[str, datetime, datetime, str | None]] = [
    ("latest month", _at("2026-09-01"), _at("2026-10-01"), None),
    ("a past month", _at("2025-09-01"), _at("2025-10-01"), None),
    ("a past month, by tier", _at("2025-09-01"), _at("2025-10-01"), "tier"),
    ("partial months (Sep 15 to Oct 20)", _at("2025-09-15T06:30:00"), _at("2025-10-20T18:00:00"), None),
    ("a quarter, by segment", _at("2026-04-01"), _at("2026-07-01"), "segment"),
    ("two years", _at("2024-10-01"), _at("2026-10-01"), None),
    ("two years, by tier", _at("2024-10-01"), _at("2026-10-01"), "tier"),
    ("two years, by rule", _at("2024-10-01"), _at("2026-10-01"), "rule"),
    ("two years and a half, partial", _at("2024-08-17T12:00:00"), _at("2027-02-03"), "segment"),
]

Call = Callable[[Database, datetime, datetime, str | None], Awaitable[Any]]


async def _fast(database: Database, start: datetime, end: datetime, group_by: str | None) -> Any:
    async with database.sessions() as session:
        return await service.metrics(session=session, start=start, end=end, group_by=group_by, lookback=LOOKBACK)


async def _exact(database: Database, start: datetime, end: datetime, group_by: str | None) -> Any:
    async with database.sessions() as session:
        return await service.exact_metrics(session=session, start=start, end=end, group_by=group_by, lookback=LOOKBACK)


async def seed(database: Database, customers: int, interactions: int) -> None:
    async with database.engine.begin() as conn:
        await conn.run_sync(SPEC.metadata.create_all)
    print(f"seeding retention ({customers:,} customers) ...", flush=True)
    await seed_retention(database, customers, interactions)
    async with database.transaction() as session:
        await session.execute(text("DELETE FROM status_changes"))
        await session.execute(text(STATUS_HISTORY_SQL), {"start": T_START})


async def build(database: Database) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    async with database.transaction() as session:
        customers = await session.run_sync(lambda s: read_model.rebuild(s.connection(), LOOKBACK))
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
        rows = (await conn.exec_driver_sql("SELECT count(*) FROM metric_facts")).scalar_one()
        totals = (await conn.exec_driver_sql("SELECT count(*) FROM metric_totals")).scalar_one()
    print(
        f"read model built (the migration's backfill): {customers:,} customers, {rows:,} rows, {totals:,} totals "
        f"in {time.perf_counter() - started:.1f}s ({time.process_time() - cpu:.1f}s CPU here)",
        flush=True,
    )


async def timed(call: Call, database: Database, case: tuple[str, datetime, datetime, str | None]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call(database, *case[1:])
    return time.perf_counter() - started, result


async def peak_and_statements(
    call: Call, database: Database, case: tuple[str, datetime, datetime, str | None]
) -> tuple[float, int]:
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        await call(database, *case[1:])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    return peak / 2**20, statements


async def through_the_app(cases: list[tuple[str, datetime, datetime, str | None]], repeat: int) -> None:
    """GET /retention/metrics through the service's app (routing, validation, JSON), as bench/reports.py."""
    app = app_for("retention", INFRA.database_url("retention"))
    print("\n| case (GET through the app) | p50 ms | p95 ms | peak MiB |\n|---|---:|---:|---:|")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://retention") as client:
        for name, start, end, group_by in cases:
            query = {"from": start.isoformat(), "to": end.isoformat()} | ({"group_by": group_by} if group_by else {})
            result = await measure(client, f"/retention/metrics?{urllib.parse.urlencode(query)}", 1, repeat)
            print(
                f"| {name} | {result['p50'] * 1000:.0f} | {result['p95'] * 1000:.0f} | {result['peak_mib']:.2f} |",
                flush=True,
            )
    await app.state.database.dispose()


async def run(args: argparse.Namespace) -> int:
    database = Database(INFRA.database_url("retention"))
    try:
        if not args.no_seed:
            await seed(database, args.customers, args.interactions)
        if not args.no_seed or args.rebuild:
            await build(database)
        load = os.getloadavg()
        print(f"measuring on {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
        print(
            "\n| case | exact p50 ms | exact p95 ms | totals p50 ms | totals p95 ms | p50 ratio"
            " | statements exact / totals | peak MiB exact / totals |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        cases = [c for c in CASES if not args.only or any(part in c[0] for part in args.only)]
        if args.http:
            await through_the_app(cases, args.rounds)
            return 0
        for case in cases:
            exact: list[float] = []
            fast: list[float] = []
            for _ in range(args.rounds):
                if args.totals_only:
                    fast.append((await timed(_fast, database, case))[0])
                    continue
                t_exact, expected = await timed(_exact, database, case)
                t_fast, found = await timed(_fast, database, case)
                if (asdict(found[0]), [asdict(g) for g in found[1]]) != (
                    asdict(expected[0]),
                    [asdict(g) for g in expected[1]],
                ):
                    print(f"DIFFERENT ANSWERS for {case[0]}", flush=True)
                    return 1
                exact.append(t_exact)
                fast.append(t_fast)
            if args.totals_only:
                peak_fast, n_fast = await peak_and_statements(_fast, database, case)
                print(
                    f"| {case[0]} | - | - | {statistics.median(fast) * 1000:.0f} | "
                    f"{percentile(fast, 0.95) * 1000:.0f} | - | - / {n_fast} | - / {peak_fast:.2f} |",
                    flush=True,
                )
                continue
            peak_exact, n_exact = await peak_and_statements(_exact, database, case)
            peak_fast, n_fast = await peak_and_statements(_fast, database, case)
            print(
                f"| {case[0]} | {statistics.median(exact) * 1000:.0f} | {percentile(exact, 0.95) * 1000:.0f} | "
                f"{statistics.median(fast) * 1000:.0f} | {percentile(fast, 0.95) * 1000:.0f} | "
                f"{statistics.median(exact) / statistics.median(fast):.0f}x | {n_exact} / {n_fast} | "
                f"{peak_exact:.2f} / {peak_fast:.2f} |",
                flush=True,
            )
        load = os.getloadavg()
        same = "" if args.totals_only else "; same answers in every call"
        print(f"\nload average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}{same}")
    finally:
        await database.dispose()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-seed", action="store_true", help="reuse the data of the previous run")
    parser.add_argument("--rebuild", action="store_true", help="with --no-seed: build the read model again")
    parser.add_argument("--only", action="append", default=[], help="measure only cases whose name contains this")
    parser.add_argument("--http", action="store_true", help="time GET /retention/metrics through the app only")
    parser.add_argument("--totals-only", action="store_true", help="time the read model only (no exact calls)")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    with INFRA.postgres(fresh=not args.no_seed, keep=args.keep):
        code = asyncio.run(run(args))
    sys.exit(code)


if __name__ == "__main__":
    main()
