"""How fast each service's replica of the customers follows a customers import:
``python -m bench.import_replicas --customers 20000``.

Starts the platform on a private Kafka + PostgreSQL as bench.imports does (same CRM_TEST_* ports), imports
N generated customers with `crm import customers` through the gateway, then polls every half second:
the customer relay (customer outbox rows published), the interaction service's replica (known_customers
with a version, i.e. its reference taken), scoring's current scores and retention's replica. It reports,
for each, the seconds after the import ended until it held every customer and the customers/s from the
import's start; and, until the last replica was complete, each process's CPU ms per customer, each
consumer's transactions and rows written per customer event (pg_stat_database), and the events handled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench import import_stats
from bench.auth import UNTHROTTLED_ENV
from bench.imports import INFRA, count, crm_import
from bench.infra import report_start, run_on_fresh_infra, start_in_order, write_report
from bench.pipeline import cpu_snapshot, watched_processes
from cli.generate import AS_OF
from cli.generate import write as generate

WAIT_S = 1800
HOPS = {
    "customer relay (published)": ("customer", "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"),
    "interaction replica": ("interaction", "SELECT count(*) FROM known_customers WHERE version > 0"),
    "scoring current scores": ("scoring", "SELECT count(*) FROM current_scores"),
    "retention replica": ("retention", "SELECT count(*) FROM customers"),
}


async def watch(want: int, started: float) -> dict[str, float | None]:
    """perf_counter() at which each hop held `want` customers (None: not within WAIT_S)."""
    done: dict[str, float | None] = dict.fromkeys(HOPS)
    while time.perf_counter() - started < WAIT_S and any(v is None for v in done.values()):
        for name, (service, sql) in HOPS.items():
            if done[name] is None and await count(service, sql) >= want:
                done[name] = time.perf_counter()
        await asyncio.sleep(0.5)
    return done


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = INFRA.state_dir / "data"
    shutil.rmtree(data, ignore_errors=True)
    mechanism = generate(data, args.customers, args.seed, AS_OF, None)
    want = mechanism["customers"]
    platform = INFRA.fresh_platform(layout=args.layout, extra_env=UNTHROTTLED_ENV)
    report: dict[str, Any] = {**report_start(args.layout), "args": vars(args) | {"json": str(args.json)}}
    try:
        await start_in_order(platform)
        pids = watched_processes(INFRA, platform)
        before = cpu_snapshot(pids)
        pg_before = await import_stats.pg_counters(
            INFRA.database_url, {s: INFRA.database(s) for s in import_stats.SERVICES}
        )
        started = time.perf_counter()
        watcher = asyncio.create_task(watch(want, started))
        report["import"] = await asyncio.to_thread(crm_import, "customers", data, args.chunk_size)
        imported = time.perf_counter()
        done = await watcher
        after = cpu_snapshot(pids)
        pg_after = await import_stats.pg_counters(
            INFRA.database_url, {s: INFRA.database(s) for s in import_stats.SERVICES}
        )
        report["load_after"] = os.getloadavg()
        report["hops"] = {
            name: None
            if at is None
            else {"after_import_s": round(at - imported, 1), "customers_per_s": round(want / (at - started), 1)}
            for name, at in done.items()
        }
        report["cpu_ms_per_customer"] = {
            name: round(1000 * (after[name] - before[name]) / want, 3)
            for name in sorted(before, key=lambda n: before[n] - after[n])
        }
        report["pg_per_customer"] = import_stats.per_row(pg_before, pg_after, want)
        report["events_handled"] = await import_stats.inbox_counts(INFRA.database_url)
    finally:
        platform.stop_all()
    return report


def print_report(report: dict[str, Any]) -> None:
    imp = report["import"]
    print(f"\ncustomers import: {imp['rows']:,} rows in {imp['seconds']} s = {imp['rows_per_s']:,.0f} rows/s "
          f"(load {report['machine']['load_before'][0]:.1f} before, {report['load_after'][0]:.1f} after)")  # fmt: skip
    for name, hop in report["hops"].items():
        text = (
            "not complete"
            if hop is None
            else f"{hop['after_import_s']:>7} s after the import, {hop['customers_per_s']:>7,} customers/s"
        )
        print(f"{name:>28}: {text}")
    print("CPU ms per customer until the last replica was complete:")
    for name, ms in report["cpu_ms_per_customer"].items():
        print(f"{name:>28}: {ms:8.3f}")
    for name, counters in report["pg_per_customer"].items():
        print(f"{'PostgreSQL ' + name:>28}: per customer {counters}")
    for name, events in report["events_handled"].items():
        print(f"{name + ' handled':>28}: {events}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk-size", type=int, default=2000, help="rows per request (default %(default)s)")
    parser.add_argument("--layout", default="combined")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "replicas.json")
    args = parser.parse_args(argv)
    report = run_on_fresh_infra(INFRA, "bench.import_replicas", lambda: run(args), keep_infra=False)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
