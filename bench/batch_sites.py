"""Where one batch's memory goes: ``python -m bench.batch_sites [--service retention] [--batch 200]``.

The consumer path of bench.consumer_path (EventConsumer.apply_batch on a private PostgreSQL, without Kafka)
under tracemalloc. After warm-up batches, for each measured batch: the traced peak during the batch above
what is traced after it (the batch's short-lived working set: decoded records, rows, statements' parameters
and results), and, for the first measured batch, what is live at its commit (SQLAlchemy's before_commit,
the batch's largest moment) that was not before the batch, by allocation site. Large short-lived pieces
per batch are what pushes an allocator's high-water mark up in a lag burst (bench.batch_memory).

    .venv/bin/python -m bench.batch_sites [--batch 200] [--batches 10] [--pg-port 55475]
"""

from __future__ import annotations

import argparse
import asyncio
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.batch_memory import private_store
from bench.consumer_path import CUSTOMERS, SERVICES, _record, apply, service_consumer, stream
from contracts.customer import CustomerCreated
from servicekit.settings import REPO_ROOT

MIB = 1024 * 1024


async def batches(args: argparse.Namespace, url: str) -> tuple[list[float], list[tuple[float, int, str]]]:
    database, consumer = service_consumer(args.service, url)
    start = datetime.now(UTC) - timedelta(days=1)
    customers = [
        _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
        for i in range(CUSTOMERS)
    ]
    await apply(consumer, customers, 200)
    records = stream(args.batch * (args.batches + args.warm_batches) // 2 + args.batch)
    warm, measured = records[: args.batch * args.warm_batches], records[args.batch * args.warm_batches :]
    await apply(consumer, warm, args.batch)
    tracemalloc.start(args.frames)
    before: list[tracemalloc.Snapshot] = []
    at_commit: list[tracemalloc.Snapshot] = []

    def snapshot_at_commit(_session: Session) -> None:
        if before and not at_commit:
            at_commit.append(tracemalloc.take_snapshot())

    event.listen(Session, "before_commit", snapshot_at_commit)
    transient: list[float] = []
    for n in range(args.batches):
        chunk = measured[n * args.batch : (n + 1) * args.batch]
        if len(chunk) < args.batch:
            break
        if n == 0:
            before.append(tracemalloc.take_snapshot())
        tracemalloc.reset_peak()
        await apply(consumer, chunk, args.batch)
        current, peak = tracemalloc.get_traced_memory()
        transient.append((peak - current) / MIB)
    event.remove(Session, "before_commit", snapshot_at_commit)
    tracemalloc.stop()
    await database.dispose()
    sites: list[tuple[float, int, str]] = []
    if before and at_commit:
        for stat in at_commit[0].compare_to(before[0], "traceback")[: args.top]:
            # tracemalloc lists a traceback's frames oldest first; shown here innermost (the allocation) first.
            shown = reversed(list(stat.traceback))
            frames = " <- ".join(
                f"{f.filename.split('/site-packages/')[-1].removeprefix(str(REPO_ROOT) + '/')}:{f.lineno}"
                for f in shown
            )
            sites.append((stat.size_diff / 1024, stat.count_diff, frames))
    return transient, sites


def print_result(args: argparse.Namespace, transient: list[float], sites: list[tuple[float, int, Any]]) -> None:
    shown = ", ".join(f"{t:.2f}" for t in transient)
    print(f"\n{args.service} consumer, batches of {args.batch}: traced peak above the end of each batch, MiB: {shown}")
    print(f"\nlive at the first measured batch's commit and not before it (top {args.top} sites):")
    print("| KiB | blocks | where (innermost first) |")
    print("|---:|---:|---|")
    for kib, blocks, where in sites:
        print(f"| {kib:+.1f} | {blocks:+d} | {where} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_sites", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--batch", type=int, default=200, help="records per batch")
    parser.add_argument("--batches", type=int, default=8, help="measured batches")
    parser.add_argument("--warm-batches", type=int, default=10, help="batches applied before measuring")
    parser.add_argument("--frames", type=int, default=4, help="frames kept per allocation site")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--pg-port", type=int, default=55475, help="port of the private PostgreSQL server")
    args = parser.parse_args(argv)
    with private_store(args.service, args.pg_port) as url:
        print_result(args, *asyncio.run(batches(args, url)))


if __name__ == "__main__":
    main()
