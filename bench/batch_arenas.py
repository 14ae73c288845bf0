"""Whether lag bursts leave pymalloc holding more: ``python -m bench.batch_arenas [--service retention]``.

The consumer path of bench.consumer_path (the service's own EventConsumer.apply_batch on a private
PostgreSQL, without Kafka), fed as a consumer is in the soak: cycles of many tiny polls (a consumer at zero
lag, --small records each) then a burst of full polls (a lagging one, --large records each). Each poll's
records are built just before it is applied, and the next poll's while it is applied (--prefetch, as
aiokafka's fetcher brings the next fetch in the background), so the records are as short-lived as in the
service and not one list built up front. After each cycle (and a full collection): pymalloc's arenas held
(MiB and count) against the bytes in live small objects, and the RSS. If held grows cycle after cycle while
live objects do not, the allocator keeps freed memory that the batches fragmented: the soak's creep.
At the end, every module-level container of the service's and servicekit's modules whose size changed
after the first cycle (caches that keep growing).

    .venv/bin/python -m bench.batch_arenas [--cycles 30] [--warm-cycles 4] [--small 2] [--small-polls 60] [--large 200]
        [--large-polls 6] [--no-prefetch] [--no-gc-freeze] [--pg-port 55476]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.batch_memory import private_store
from bench.cacheprobe import pymalloc_mib
from bench.consumer_path import CUSTOMERS, SERVICES, _record, interaction_events, service_consumer
from bench.infra import rss_mib
from contracts.customer import CustomerCreated
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import EventData
from servicekit.inbox.consumer import EventConsumer
from servicekit.runner import freeze_startup_objects
from servicekit.settings import REPO_ROOT


def records_forever(seed: int = 1, customers: int = CUSTOMERS, stable_tiers: bool = False) -> Iterator[ConsumerRecord]:
    """bench.consumer_path.stream's records (of `customers` customers), made one at a time. stable_tiers:
    each customer keeps one value tier (the scoring derives it from the customer's value, which seldom
    changes; the stream's random tier changes every row of the customer's metrics at most score updates)."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    previous: dict[str, Any] = {}
    offset, i = 0, 0
    while True:
        customer = f"c{rng.randrange(customers):04d}"
        events: list[EventData]
        events, previous[customer] = interaction_events(rng, customer, start + timedelta(milliseconds=2 * i), previous)
        if stable_tiers:
            tier = TIERS[int(customer[1:]) % len(TIERS)]
            previous[customer] = previous[customer].model_copy(update={"value_tier": tier})
            events = [
                e.model_copy(update={"current": previous[customer]}) if isinstance(e, ScoreUpdated) else e
                for e in events
            ]
        i += 1
        for data in events:
            yield _record(data, offset)
            offset += 1


TIERS = ("platinum", "gold", "silver", "bronze")


def take(source: Iterator[ConsumerRecord], n: int) -> list[ConsumerRecord]:
    return [next(source) for _ in range(n)]


async def polls(
    consumer: EventConsumer, source: Iterator[ConsumerRecord], size: int, count: int, prefetch: bool
) -> int:
    """Apply `count` polls of `size` records; with prefetch the next poll's records exist during each batch."""
    applied = 0
    upcoming = take(source, size)
    for _ in range(count):
        current = upcoming
        upcoming = take(source, size) if prefetch else []
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await consumer.apply_batch([consumer.decode(r) for r in current])
        PEAKS["batch"] = max(PEAKS["batch"], tracemalloc.get_traced_memory()[1] - before)
        applied += len(current)
        del current
        if not prefetch:
            upcoming = take(source, size)
    return applied


PEAKS = {"batch": 0}  # with --peaks: the most one batch allocated above its start, this cycle
# With --alerts: the most unresolved alerts one batch held at its commit, and the lineage ids in them, this cycle.
ALERTS = {"alerts": 0, "lineage_ids": 0}


def alerts_held(session: Session) -> tuple[int, int]:
    """Unresolved alerts in the session's identity map and the event ids their lineage lists carry."""
    from services.retention.alerts.models import Alert

    held = [o for o in session.identity_map.values() if isinstance(o, Alert) and o.open_slot is not None]
    return len(held), sum(len(a.event_ids) for a in held)


def count_alerts_at_commit(session: Session) -> None:
    alerts, ids = alerts_held(session)
    ALERTS["alerts"], ALERTS["lineage_ids"] = max(ALERTS["alerts"], alerts), max(ALERTS["lineage_ids"], ids)


# With --feature-rows: the most JSON bytes of the scoring batch's features rows (all of them, and one row), this cycle.
FEATURE_ROWS = {"rows_bytes": 0, "row_bytes": 0}
# The columns that grow with a customer's history (windows of marks, bounded id lists, open complaints).
HISTORY_COLUMNS = ("seen_ids", "recent_purchases", "recent_complaints", "closed_complaint_ids", "open_complaint_ids")


def history_bytes(rows: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """JSON bytes of the history columns over `rows`, and the most in one row."""
    sizes = [sum(len(json.dumps(row[c], default=str)) for c in HISTORY_COLUMNS) for row in rows]
    return sum(sizes), max(sizes, default=0)


def count_feature_rows() -> None:
    """Wrap the scoring preload so each batch's features rows are measured once loaded."""
    from services.scoring.scores import feature_rows

    preload = feature_rows.preload

    async def measured(uow: Any, events: Any) -> None:
        await preload(uow, events)
        total, most = history_bytes(uow.state(feature_rows.FeatureRows).rows.values())
        FEATURE_ROWS.update(
            rows_bytes=max(FEATURE_ROWS["rows_bytes"], total), row_bytes=max(FEATURE_ROWS["row_bytes"], most)
        )

    vars(feature_rows)["preload"] = measured  # the name the scoring batch hook calls


def shorten_history(marks_s: float | None, seen_kept: int | None) -> None:
    """An experiment: the scoring features keep their marks `marks_s` seconds of business time (the service's
    90 and 180 days) and `seen_kept` de-duplication keys (its 500), for this process only."""
    from services.scoring.scores.features import events

    if marks_s is not None:
        vars(events)["COMPLAINT_WINDOW"] = vars(events)["PURCHASE_WINDOW"] = timedelta(seconds=marks_s)
    if seen_kept is not None:
        vars(events)["SEEN_IDS_KEPT"] = seen_kept


def module_containers() -> dict[str, int]:
    """Sizes of the module-level dicts, lists, sets and functools caches of services.* and servicekit.*."""
    sizes: dict[str, int] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith(("services.", "servicekit.", "contracts.")) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, dict | list | set) and not attr.startswith("__"):
                sizes[f"{name}.{attr}"] = len(value)
            elif isinstance(value, functools._lru_cache_wrapper):
                sizes[f"{name}.{attr}()"] = value.cache_info().currsize
    return sizes


def print_grown(grown: list[Any]) -> None:
    print("\nlive now and not after cycle 1, by allocation site (innermost first):")
    for stat in grown:
        frames = " <- ".join(
            f"{f.filename.split('/site-packages/')[-1].removeprefix(str(REPO_ROOT) + '/')}:{f.lineno}"
            for f in reversed(list(stat.traceback))
        )
        print(f"  {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks {frames}")


def where(cycle: int, started: float, events: int) -> dict[str, Any]:
    stats = pymalloc_mib()
    return {
        "cycle": cycle,
        "t_s": round(time.monotonic() - started, 1),
        "events": events,
        "rss_mib": round(rss_mib(os.getpid()), 1),
        "held_mib": stats.get("pymalloc_arenas_mib"),
        "live_mib": stats.get("pymalloc_in_use_mib"),
        "max_held_mib": stats.get("pymalloc_arenas_max_mib"),
        **({"batch_peak_mib": round(PEAKS["batch"] / 2**20, 2)} if tracemalloc.is_tracing() else {}),
        **{f"most_{k}": v for k, v in ALERTS.items() if v},
        **{f"most_history_{k}": v for k, v in FEATURE_ROWS.items() if v},
    }


async def cycles(args: argparse.Namespace, url: str) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    database, consumer = service_consumer(args.service, url)
    if args.lineage_kept is not None:  # an experiment: what the batches hold with a shorter lineage per alert
        from services.retention.alerts import service as alerts_service

        vars(alerts_service)["EVENT_IDS_KEPT"] = args.lineage_kept  # the name apply_trigger reads
    if args.alerts:
        event.listen(Session, "before_commit", count_alerts_at_commit)
    if args.feature_rows:
        count_feature_rows()
    shorten_history(args.marks_kept_s, args.seen_kept)
    start = datetime.now(UTC) - timedelta(days=1)
    customers = [
        _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
        for i in range(args.customers)
    ]
    for first in range(0, args.customers, 200):
        await consumer.apply_batch([consumer.decode(r) for r in customers[first : first + 200]])
    del customers
    if args.gc_freeze:
        freeze_startup_objects()  # as the service's process does once started (servicekit.runner)
    source = records_forever(customers=args.customers, stable_tiers=args.stable_tiers)
    for _ in range(args.warm_cycles):  # every customer seen (the service's rows, the bench's score state)
        await polls(consumer, source, args.small, args.small_polls, args.prefetch)
        await polls(consumer, source, args.large, args.large_polls, args.prefetch)
    started, rows, events = time.monotonic(), [], 0
    containers: dict[str, int] = {}
    if args.peaks:  # one frame: the sizes, not the sites (pymalloc's figures then include tracemalloc's own)
        tracemalloc.start(1)
    for cycle in range(args.cycles):
        PEAKS["batch"] = 0
        ALERTS.update(alerts=0, lineage_ids=0)
        FEATURE_ROWS.update(rows_bytes=0, row_bytes=0)
        events += await polls(consumer, source, args.small, args.small_polls, args.prefetch)
        events += await polls(consumer, source, args.large, args.large_polls, args.prefetch)
        gc.collect()
        rows.append(where(cycle, started, events))
        print(json.dumps(rows[-1]), flush=True)
        if cycle == 0:
            containers = module_containers()
            if args.trace_top:
                tracemalloc.start(args.frames)
        elif cycle == 1 and args.trace_top:
            first_snapshot = tracemalloc.take_snapshot()
    if args.trace_top:
        print_grown(tracemalloc.take_snapshot().compare_to(first_snapshot, "traceback")[: args.trace_top])
        tracemalloc.stop()
    changed = {
        name: (containers.get(name, 0), size)
        for name, size in module_containers().items()
        if size != containers.get(name, 0)
    }
    await database.dispose()  # its backends exit, which flushes their table statistics
    if args.table_stats:
        await print_table_stats(url)
    return rows, changed


async def print_table_stats(url: str) -> None:
    """Rows inserted, updated and deleted (each update or delete leaves a dead row for vacuum) per table."""
    await asyncio.sleep(1.0)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        found = await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
            " ORDER BY n_tup_upd + n_tup_del DESC, relname LIMIT 8"
        )
    finally:
        await conn.close()
    print("\n| table | inserted | updated | deleted | live | dead |\n|---|---:|---:|---:|---:|---:|")
    for r in found:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |")


def print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], changed: dict[str, tuple[int, int]]) -> None:
    print(
        f"\n{args.service} consumer; a cycle = {args.small_polls} polls of {args.small} records, then "
        f"{args.large_polls} of {args.large}; prefetch {args.prefetch}, gc.freeze {args.gc_freeze}"
    )
    # The largest batch's peak (--peaks) and its features rows' history columns (--feature-rows), where taken.
    extra = [k for k in ("batch_peak_mib", "most_history_rows_bytes", "most_history_row_bytes") if k in rows[0]]
    print(
        "| cycle | events | RSS MiB | pymalloc held MiB | in live objects MiB | most held MiB |"
        + "".join(f" {k} |" for k in extra)
    )
    print("|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra))
    for r in rows:
        print(
            f"| {r['cycle']} | {r['events']} | {r['rss_mib']} | {r['held_mib']} | {r['live_mib']} |"
            f" {r['max_held_mib']} |" + "".join(f" {r.get(k)} |" for k in extra)
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"\nafter cycle 0 -> end: RSS {first['rss_mib']} -> {last['rss_mib']} MiB"
            f" ({(last['rss_mib'] / first['rss_mib'] - 1) * 100:+.1f} %), pymalloc held {first['held_mib']} ->"
            f" {last['held_mib']}, live {first['live_mib']} -> {last['live_mib']}"
        )
    print("\nmodule-level containers whose size changed after cycle 0:")
    for name, (before, after) in sorted(changed.items()):
        print(f"  {name}: {before} -> {after}")
    if not changed:
        print("  none")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_arenas", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--warm-cycles", type=int, default=4, help="cycles before the first one reported")
    parser.add_argument("--small", type=int, default=2, help="records per poll at zero lag")
    parser.add_argument("--small-polls", type=int, default=60, help="tiny polls per cycle")
    parser.add_argument("--large", type=int, default=200, help="records per poll in a lag burst")
    parser.add_argument("--large-polls", type=int, default=6, help="full polls per cycle")
    parser.add_argument("--no-prefetch", dest="prefetch", action="store_false")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false")
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="customers the stream is about")
    parser.add_argument("--peaks", action="store_true", help="tracemalloc: the largest batch's peak per cycle")
    parser.add_argument("--stable-tiers", action="store_true", help="each customer keeps one value tier")
    parser.add_argument("--alerts", action="store_true", help="unresolved alerts and lineage ids one batch holds")
    parser.add_argument("--lineage-kept", type=int, help="experiment: event ids kept per alert (the service's 50)")
    parser.add_argument("--feature-rows", action="store_true", help="scoring: JSON bytes of a batch's history columns")
    parser.add_argument("--marks-kept-s", type=float, help="experiment: scoring marks kept, seconds (90/180 days)")
    parser.add_argument(
        "--seen-kept", type=int, help="experiment: scoring de-duplication keys kept (the service's 500)"
    )
    parser.add_argument("--table-stats", action="store_true", help="rows written and dead rows per table")
    parser.add_argument("--trace-top", type=int, default=0, help="tracemalloc: the N sites grown after cycle 1")
    parser.add_argument("--frames", type=int, default=4, help="frames kept per site with --trace-top")
    parser.add_argument("--pg-port", type=int, default=55476, help="port of the private PostgreSQL server")
    args = parser.parse_args(argv)
    with private_store(args.service, args.pg_port) as url:
        print_rows(args, *asyncio.run(cycles(args, url)))


if __name__ == "__main__":
    main()
