"""What a consumer keeps after large batches: ``python -m bench.batch_memory [--service retention]``.

The consumer path of bench.consumer_path (the service's own EventConsumer.apply_batch on PostgreSQL, without
Kafka) applied in phases: small batches (a consumer at zero lag), then large ones (a lagging consumer's full
polls), then small again. After each phase, the process's memory as the soak's probe reads it
(bench.cacheprobe): RSS split into anonymous memory and file pages, glibc's arenas (held, in use, free) and
pymalloc's arenas (held, in live objects); at the end malloc_trim(0) and the anonymous RSS before and after.
If the large phase raises the RSS and the small phase after it does not bring it back, while the memory in
live objects returns to where it was, the difference is memory freed but kept by an allocator: which one,
the two arenas' figures say.

    .venv/bin/python -m bench.batch_memory [--small 50] [--large 500] [--records 4000] [--pg-port 55474]
PostgreSQL runs privately under .state/batch-memory (--pg-port: its port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.cacheprobe import probe_line, pymalloc_mib, trim
from bench.consumer_path import CUSTOMERS, SERVICES, _record, apply, service_consumer, stream
from bench.infra import rss_mib
from contracts.customer import CustomerCreated
from servicekit.migrations import upgrade
from servicekit.runner import freeze_startup_objects
from servicekit.settings import REPO_ROOT

STATE_DIR = REPO_ROOT / ".state" / "batch-memory"
SHOWN = (
    "rss_mib",
    "anon_mib",
    "heap_mib",
    "in_use_mib",
    "heap_free_mib",
    "arenas",
    "pymalloc_arenas_mib",
    "pymalloc_in_use_mib",
)


def pg_ctl(command: str, service: str, port: int) -> None:
    env = {**os.environ, "CRM_STATE_DIR": str(STATE_DIR), "PG_PORT": str(port), "PG_DATABASES": service}
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "postgres.sh"), command], check=True, env=env)


@contextlib.contextmanager
def private_store(service: str, port: int) -> Iterator[str]:
    """The URL of `service`'s database, empty and migrated, on a private PostgreSQL server stopped afterwards."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{service}"
    pg_ctl("start", service, port)
    try:
        pg_ctl("reset-dbs", service, port)
        upgrade(REPO_ROOT / "services" / service / "migrations", url, service)
        yield url
    finally:
        pg_ctl("stop", service, port)


def where(phase: str, started: float) -> dict[str, Any]:
    """The process's memory now, as the soak's probe reads it."""
    return {"phase": phase} | probe_line(started, lambda: round(rss_mib(os.getpid()), 1), None) | pymalloc_mib()


async def phases(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    database, consumer = service_consumer(args.service, url)
    freeze_startup_objects()  # as the service's process does once started
    start = datetime.now(UTC) - timedelta(days=1)
    customers = [
        _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
        for i in range(CUSTOMERS)
    ]
    await apply(consumer, customers, 200)
    records = stream(args.records * 3)  # about 2.4 records an interaction
    n = args.records
    plan = [
        ("warm-up, small batches", records[:n], args.small),
        ("small batches", records[n : 2 * n], args.small),
        ("large batches", records[2 * n : 3 * n], args.large),
        ("small batches again", records[3 * n : 4 * n], args.small),
        ("small batches, later", records[4 * n : 5 * n], args.small),
    ]
    started, rows = time.monotonic(), []
    for phase, chunk, batch in plan:
        await apply(consumer, chunk, batch)
        gc.collect()
        rows.append(where(f"{phase} ({len(chunk)} records, {batch} a batch)", started) | {"batch": batch})
        print(json.dumps(rows[-1]), flush=True)
    rows[-1] |= trim()
    await database.dispose()
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("\n| after | RSS | anonymous | glibc held | in use | free | arenas | pymalloc held | in objects |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['phase']} | " + " | ".join(str(row.get(key, "")) for key in SHOWN) + " |")
    last = rows[-1]
    if "trim_anon_before_mib" in last:
        before, after = last["trim_anon_before_mib"], last["trim_anon_after_mib"]
        print(f"\nmalloc_trim(0) at the end: anonymous RSS {before} -> {after} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--records", type=int, default=4000, help="records per phase (about)")
    parser.add_argument("--small", type=int, default=50, help="records per batch at zero lag")
    parser.add_argument("--large", type=int, default=500, help="records per batch when lagging (a full poll)")
    parser.add_argument("--pg-port", type=int, default=55474, help="port of the private PostgreSQL server")
    args = parser.parse_args(argv)
    with private_store(args.service, args.pg_port) as url:
        print_rows(asyncio.run(phases(args, url)))


if __name__ == "__main__":
    main()
