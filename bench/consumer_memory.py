"""Where a consumer's memory goes: tracemalloc snapshots of the retention (or scoring) consumer in process.

    .venv/bin/python -m bench.consumer_memory [--service retention] [--customers new|300] [--warm 20]
                                              [--batches 60] [--batch 150] [--top 15]

The records of a stream of interactions (each with its complaint or survey and score.updated, as
bench.consumer_path builds them) are applied through the service's own consumer
(`EventConsumer.apply_batch`) on a private PostgreSQL, batch after batch, without Kafka. With
`--customers new` every interaction is for a customer never seen before (a CustomerCreated first), so
anything kept per customer or per event grows without end; with a number the stream cycles over that
many customers, as the soak does. After `--warm` batches a tracemalloc snapshot is taken, then after each
further third of `--batches`; the report lists the allocation sites (file:line) that grew most between
the first and the last snapshot, the traced total at each, and the process's RSS.
PostgreSQL runs privately under .state/consumer-memory on port 55491.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import event

from bench.consumer_path import _record, interaction_events
from bench.infra import rss_mib
from contracts.customer import CustomerCreated
from contracts.scoring import ScoreValues
from servicekit.db import Database
from servicekit.events.envelope import EventData
from servicekit.inbox.consumer import EventConsumer
from servicekit.migrations import upgrade
from servicekit.settings import REPO_ROOT

STATE_DIR = REPO_ROOT / ".state" / "consumer-memory"
PG_PORT = 55491


def log(message: str) -> None:
    print(f"[consumer-memory {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Stream:
    """Interactions and their follow-up events, for ever-new customers or cycling over a fixed set."""

    def __init__(self, customers: int | None, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.created: set[str] = set()
        self.previous: dict[str, ScoreValues] = {}
        self.at = datetime.now(UTC) - timedelta(hours=6)
        self.offset = 0
        self.count = 0

    def _customer(self) -> str:
        self.count += 1
        if self.customers is None:
            return f"n{self.count:07d}"
        return f"c{self.rng.randrange(self.customers):05d}"

    def interaction(self) -> list[EventData]:
        rng = self.rng
        customer = self._customer()
        self.at += timedelta(milliseconds=50)
        at = self.at
        events: list[EventData] = []
        if customer not in self.created:
            if self.customers is not None:
                self.created.add(customer)
            events.append(CustomerCreated(customer_id=customer, kind="person", status="active", created_at=at))
        drawn, current = interaction_events(rng, customer, at, self.previous)
        events += drawn
        if self.customers is not None:
            self.previous[customer] = current
        return events

    def batch(self, size: int) -> tuple[list[ConsumerRecord], int]:
        """About `size` records (whole interactions), and how many interactions they hold."""
        records: list[ConsumerRecord] = []
        interactions = 0
        while len(records) < size:
            interactions += 1
            for data in self.interaction():
                records.append(_record(data, self.offset))
                self.offset += 1
        return records, interactions


def pg_ctl(command: str, service: str) -> None:
    env = {**os.environ, "CRM_STATE_DIR": str(STATE_DIR), "PG_PORT": str(PG_PORT), "PG_DATABASES": service}
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "postgres.sh"), command], check=True, env=env)


MALLINFO2_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in MALLINFO2_FIELDS]


def breakdown() -> dict[str, float]:
    """This process's memory in MiB: RSS; what Python objects hold (pymalloc arenas, and the share traced as
    live); the C heap (glibc malloc: in use, and free but kept)."""
    out = {"rss": rss_mib(os.getpid())}
    if tracemalloc.is_tracing():
        out["traced"] = tracemalloc.get_traced_memory()[0] / 2**20
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    out["malloc in use"] = (info.uordblks + info.hblkhd) / 2**20
    out["malloc free"] = info.fordblks / 2**20
    with tempfile.TemporaryFile("w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured:
            if line.startswith("# arenas allocated current"):
                out["pymalloc arenas"] = int(line.split("=")[1]) * 256 / 1024
    return out


def prepared(connections: list[Any]) -> dict[str, float]:
    """Connections opened, and the prepared statements they keep (the asyncpg dialect's LRU of
    prepared_statement_cache_size per connection) with the length of those statements' SQL in KiB."""
    caches = [c._prepared_statement_cache for c in connections if c._prepared_statement_cache is not None]
    keys = [key for cache in caches for key in cache]
    return {"connections": len(connections), "prepared": len(keys), "their SQL KiB": sum(len(k) for k in keys) / 1024}


def show(marks: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in marks.items())


def snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    )


async def run(args: argparse.Namespace, url: str) -> None:
    settings_module = import_module(f"services.{args.service}.settings")
    settings = getattr(settings_module, f"{args.service.capitalize()}Settings")(database_url=url)
    spec = import_module(f"services.{args.service}.main").SPEC
    components = spec.load_components()
    database = Database(url, source=f"/crm/{args.service}")
    consumer = EventConsumer(database, settings, components.handlers, spec.consumes, components.before_batch)
    # The retention consumer process also runs the housekeeping loop (snoozes, auto-save, pruning, gauges).
    housekeeping = import_module("services.retention.background").housekeeping_round if args.housekeeping else None
    opened: list[Any] = []  # the pool's DBAPI connections, to count the statements each keeps prepared
    event.listen(database.engine.sync_engine, "connect", lambda dbapi, record: opened.append(dbapi))
    stream = Stream(None if args.customers == "new" else int(args.customers))
    interactions = 0

    async def batches(n: int) -> None:
        nonlocal interactions
        for _ in range(n):
            records, count = stream.batch(args.batch)
            interactions += count
            await consumer.apply_batch([consumer.decode(r) for r in records])
            if housekeeping is not None:
                await housekeeping(database, settings)

    if args.frames:
        tracemalloc.start(args.frames)
    log(f"warming up: {args.warm} batches of ~{args.batch} records, customers: {args.customers}")
    await batches(args.warm)
    gc.collect()
    first = snapshot() if args.frames else None
    marks = [(interactions, breakdown() | prepared(opened))]
    log(f"after warm-up: {interactions} interactions; MiB: {show(marks[0][1])}")
    step = max(1, args.batches // 3)
    done = 0
    while done < args.batches:
        n = min(step, args.batches - done)
        await batches(n)
        done += n
        gc.collect()
        marks.append((interactions, breakdown() | prepared(opened)))
        log(f"after {done} more batches: {interactions} interactions; MiB: {show(marks[-1][1])}")
    handled = marks[-1][0] - marks[0][0]
    print(f"\n{args.service} consumer, customers {args.customers}, batches of ~{args.batch} records, MiB:\n")
    names = list(marks[-1][1])
    print(f"| interactions | {' | '.join(names)} |\n|---:|{'---:|' * len(names)}")
    for n, values in marks:
        print(f"| {n} | {' | '.join(f'{values.get(k, 0.0):.1f}' for k in names)} |")
    grown = [marks[-1][1].get(k, 0.0) - marks[0][1].get(k, 0.0) for k in names[:-3]]
    print(f"| bytes per interaction | {' | '.join(f'{2**20 * v / max(handled, 1):+.0f}' for v in grown)} | | | |")
    shapes = Counter(
        " ".join(sql.split()[:4])[:60]
        for connection in opened
        if connection._prepared_statement_cache is not None
        for sql in connection._prepared_statement_cache
    )
    print("\n| prepared statements kept | beginning |\n|---:|---|")
    for shape, n in shapes.most_common(args.top):
        print(f"| {n} | `{shape}` |")
    if first is not None:
        last = snapshot()
        print("\n| grown KiB | blocks | size KiB | allocated at |\n|---:|---:|---:|---|")
        for stat in last.compare_to(first, "lineno")[: args.top]:
            print(
                f"| {stat.size_diff / 1024:+.1f} | {stat.count_diff:+d} | {stat.size / 1024:.1f} | `{_where(stat)}` |"
            )
        for stat in last.compare_to(first, "traceback")[: args.tracebacks]:
            print(f"\n{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks:")
            for line in stat.traceback.format(most_recent_first=True)[: 2 * args.frames]:
                print("   ", line)
    engine = database.engine.sync_engine
    cache = getattr(engine, "_compiled_cache", None)
    if cache is not None:
        print(f"\nSQLAlchemy compiled cache: {len(cache)} entries (capacity {cache.capacity})")
    await database.dispose()


def _where(stat: tracemalloc.StatisticDiff) -> str:
    frame = stat.traceback[0]
    name = frame.filename
    name = name.split("site-packages/")[1] if "site-packages/" in name else name.removeprefix(f"{REPO_ROOT}/")
    return f"{name}:{frame.lineno}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=("retention", "scoring"), default="retention")
    parser.add_argument("--customers", default="new", help="'new' (every interaction a new customer) or a number")
    parser.add_argument("--warm", type=int, default=20, help="batches before the first snapshot")
    parser.add_argument("--batches", type=int, default=60, help="batches after the first snapshot")
    parser.add_argument("--batch", type=int, default=150, help="records per batch (transaction)")
    parser.add_argument(
        "--frames", type=int, default=6, help="frames tracemalloc keeps per allocation (0: no tracemalloc)"
    )
    parser.add_argument("--top", type=int, default=15, help="allocation sites to list")
    parser.add_argument("--tracebacks", type=int, default=0, help="also list this many grown tracebacks")
    parser.add_argument("--housekeeping", action="store_true", help="retention: a housekeeping round after each batch")
    parser.add_argument("--sqlite", action="store_true", help="on a SQLite file instead of PostgreSQL")
    args = parser.parse_args(argv)
    if args.sqlite:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path = STATE_DIR / f"{args.service}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(REPO_ROOT / "services" / args.service / "migrations", url, args.service)
        asyncio.run(run(args, url))
        return
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{args.service}"
    pg_ctl("start", args.service)
    try:
        pg_ctl("reset-dbs", args.service)
        upgrade(REPO_ROOT / "services" / args.service / "migrations", url, args.service)
        asyncio.run(run(args, url))
    finally:
        pg_ctl("stop", args.service)


if __name__ == "__main__":
    main()
