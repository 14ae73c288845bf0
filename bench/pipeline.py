"""Load, latency and memory of the whole pipeline on PostgreSQL: ``python -m bench.pipeline`` (`make bench`).

Starts a private Kafka + PostgreSQL and the platform on them (bench.infra; by default API, relay and consumer
of each service as separate processes; `--layout combined` runs one process per service as `make run` does,
`--layout consumer-apart` the API with its relay and the consumer apart), then, in one run:

1. setup: customers through the gateway's bulk import; how fast each consumer group applies their
   ``customer.created`` events (a backlog of thousands) is measured on the way;
2. latency, at each of ``--latency-rates`` (default 50/s and 200/s): complaints of severity high through
   the gateway, open loop, each for a customer that has no alert yet, so each raises a fresh
   ``severe_complaint`` alert (one open alert per customer and reason). Three latencies per complaint, all
   from its *scheduled* send time (no coordinated omission): the gateway's 201; the retention transaction
   that inserts the alert committing; and the alert being visible through the gateway (``GET
   /api/v1/alerts?customer_id=``), for one complaint in ten.
   *Commit* is observed with a row trigger the benchmark adds to retention's ``alerts`` table: it calls
   ``pg_notify``, which PostgreSQL delivers exactly when the inserting transaction commits, to a LISTEN
   connection in a separate observer process that only timestamps it. No polling, so the measurement adds
   one notification per alert and nothing else. *Visible* is one GET through the gateway issued when the
   commit is observed (sampled, so the reads do not add load that would distort the commit figures).
   In the same phase, a *floor* probe sends a bare produce -> consume round trip on the same broker at the
   same rate, with the platform's own client settings (servicekit.kafka): the best one Kafka hop can do on
   this machine under this load. The ratio pipeline p99 / floor p99 is reported.
3. throughput: steps of constant offered load (purchases 60 %, complaints 25 %, NPS answers 15 %, the mix
   of bench.chaos) through the gateway, until a step fails. A step is sustained when every request got a
   2xx, the answers kept pace with the offered rate (>= 95 %), and the backlog stayed bounded: unpublished
   outbox rows plus every consumer group's lag (from Kafka: end offsets minus committed offsets) drains
   within 5 s once the step ends, and over the second half of the step grows by less than 5 % of the
   produced event rate or ends under one second's worth of events.

Outbox commit -> publish latency comes from the relays' ``crm_outbox_publish_delay_seconds`` histograms
(scraped before and after each phase) and, exactly, from the outbox rows themselves (published_at -
created_at). Resident memory of every process comes from /proc (PSS summed for PostgreSQL, whose shared
buffers RSS would count once per backend); CPU seconds per process per phase from /proc/<pid>/stat.

One run prints one report and writes it as JSON to .state/bench/pipeline.json. The machine is whatever
runs it: the report names its cores and load average. `--state-dir`, `--kafka-port`, `--pg-port` and
`--port-offset` put the private infrastructure and the platform elsewhere, so two checkouts can run it at once.
`--profile DIR` runs every platform process under cProfile (CPU clock, bench.profiled) and writes
``DIR/<process>.prof`` when it stops: the whole run, start-up included, and CPU inflated by the profiler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.chaos import consumed_topics, interaction_body
from bench.infra import (
    LAYOUTS,
    Infra,
    another_instance,
    cpu_seconds,
    ensure_topic,
    pid_file,
    postgres_pids,
    report_start,
    rss_mib,
    run_on_fresh_infra,
    start_in_order,
    write_report,
)
from contracts import topics
from runner.launcher import SERVICES, Platform
from servicekit.kafka import make_consumer, make_producer, topic_partitions
from servicekit.settings import REPO_ROOT, KafkaSettings

# Private infrastructure: ports apart from `make run`, `make test` and `make chaos`; service ports + offset
# stay below Linux's ephemeral range (32768+).
INFRA = Infra(REPO_ROOT / ".state" / "bench", kafka_port=19392, pg_port=55463, port_offset=22000)
ALERT_CHANNEL = "bench_alert"
FLOOR_TOPIC = "bench.floor.v1"
VISIBLE_SAMPLE = 10  # one complaint in this many is also read back through the gateway
COMMIT_WAIT_S = 300.0  # after the last complaint: an alert not committed by then counts as missing
PSS_PROCESSES = ("postgres",)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Wait until check() holds (True) or timeout_s passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)


# ---- statistics ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported figure is one that was measured)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50": percentile(ms, 0.50),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms) if ms else float("nan"),
    }


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style quantile from cumulative (upper bound, count) pairs, linear within a bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) points: how fast a backlog grows, per second."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


# ---- processes: memory and CPU from /proc -------------------------------------------------------------


def pss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def watched_processes(infra: Infra, platform: Platform) -> dict[str, list[int]]:
    """Every process of the run: the platform's, the broker, the database server (with its backends), us."""
    pids = {name: [r.popen.pid] for name, r in platform.running.items()}
    kafka = pid_file(infra.state_dir / "kafka" / "kafka.pid")
    if kafka:
        pids["kafka"] = [kafka]
    if postgres := postgres_pids(infra.state_dir):
        pids["postgres"] = postgres
    pids["bench (load generator)"] = [os.getpid()]
    return pids


def memory_mib(pids: dict[str, list[int]]) -> dict[str, float]:
    return {
        name: round(
            sum(pss_mib(p) if name in PSS_PROCESSES else rss_mib(p) for p in group if Path(f"/proc/{p}").exists()), 1
        )
        for name, group in pids.items()
    }


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far per group. PostgreSQL's counts its postmaster's exited backends too (their time
    moves to the postmaster when it reaps them), so a phase's difference keeps the CPU of connections
    closed during it; without that, pools that closed connections under load looked cheaper."""

    def used(pid: int, postmaster: bool) -> float:
        with contextlib.suppress(OSError):  # a database backend may have exited meanwhile
            return cpu_seconds(pid, reaped_children=postmaster)
        return 0.0

    return {
        name: sum(used(p, name == "postgres" and i == 0) for i, p in enumerate(group)) for name, group in pids.items()
    }


# ---- backlog: outbox rows not yet published and consumer lag, from the sources themselves -------------


class Backlog:
    # Rows waiting in each outbox; a subclass may bound the count (a migration's backlog of a million rows
    # costs PostgreSQL a tenth of a second per count) and poll less often.
    outbox_sql = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    poll_s = 0.25

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        groups: dict[str, list[str]] = {}
        for topic, readers in consumed_topics().items():
            for group in readers:
                groups.setdefault(group, []).append(topic)
        self.groups = groups
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._db: dict[str, asyncpg.Connection] = {}

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.infra.kafka)
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka, group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        for topic in sorted({t for ts in self.groups.values() for t in ts}):
            self._partitions[topic] = await topic_partitions(self.infra.kafka, topic)
            if not self._partitions[topic]:
                raise RuntimeError(f"topic {topic} has no partitions")
        for name in SERVICES:
            self._db[name] = await asyncpg.connect(self.infra.database_url(name, "postgresql"))

    async def stop(self) -> None:
        for conn in self._db.values():
            with contextlib.suppress(Exception):
                await conn.close()
        with contextlib.suppress(Exception):
            if self._consumer is not None:
                await self._consumer.stop()
        with contextlib.suppress(Exception):
            if self._admin is not None:
                await self._admin.close()

    async def produced(self) -> int:
        """Messages on every consumed platform topic so far (the sum of end offsets)."""
        assert self._consumer is not None
        every = [tp for parts in self._partitions.values() for tp in parts]
        return sum((await self._consumer.end_offsets(every)).values())

    async def sample(self) -> dict[str, Any]:
        assert self._admin is not None and self._consumer is not None
        every = [tp for parts in self._partitions.values() for tp in parts]
        end = await self._consumer.end_offsets(every)
        lag: dict[str, int] = {}
        for group, consumed in self.groups.items():
            committed = await self._admin.list_consumer_group_offsets(group)
            lag[group] = sum(
                max(end[tp] - (committed[tp].offset if tp in committed else 0), 0)
                for topic in consumed
                for tp in self._partitions[topic]
            )
        outbox = {name: int(await conn.fetchval(self.outbox_sql)) for name, conn in self._db.items()}
        return {"lag": lag, "outbox": outbox, "total": sum(lag.values()) + sum(outbox.values())}

    async def wait_drained(self, timeout_s: float) -> float:
        """Seconds until nothing is unpublished and no group lags (seen twice in a row); inf on timeout."""
        started = time.monotonic()
        quiet = 0
        while time.monotonic() - started < timeout_s:
            quiet = quiet + 1 if (await self.sample())["total"] == 0 else 0
            if quiet >= 2:
                return time.monotonic() - started
            await asyncio.sleep(self.poll_s)
        return float("inf")

    async def outbox_delays(self, since: datetime, until: datetime) -> dict[str, dict[str, float]]:
        """Exact commit -> publish delay of every outbox row written in the window, per service."""
        result = {}
        for name, conn in self._db.items():
            rows = await conn.fetch(
                "SELECT extract(epoch FROM published_at - created_at)::float8 AS d FROM outbox"
                " WHERE created_at >= $1 AND created_at < $2 AND published_at IS NOT NULL",
                since,
                until,
            )
            if rows:
                result[name] = summary_ms([r["d"] for r in rows])
        return result

    async def first_published(self, service: str, since: datetime, until: datetime) -> dict[str, float]:
        """When the broker acknowledged each customer's first event written in the window (epoch seconds),
        from the service's outbox rows (keyed by customer id; published_at is the relay's ack time)."""
        rows = await self._db[service].fetch(
            "SELECT key, extract(epoch FROM min(published_at))::float8 AS at FROM outbox"
            " WHERE created_at >= $1 AND created_at < $2 AND published_at IS NOT NULL GROUP BY key",
            since,
            until,
        )
        return {r["key"]: r["at"] for r in rows}


# ---- relay histograms ------------------------------------------------------------------------------------


async def scrape_outbox_histograms(http: aiohttp.ClientSession, platform: Platform) -> dict[str, dict[float, float]]:
    """Cumulative crm_outbox_publish_delay_seconds buckets of every relay, per service (the relay is its own
    process in the split layout, part of the service's process otherwise)."""
    result: dict[str, dict[float, float]] = {}
    split = any(name.endswith("-relay") for name in platform.specs)
    for name, spec in platform.specs.items():
        if (split and not name.endswith("-relay")) or (not split and name not in SERVICES):
            continue
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"http://127.0.0.1:{spec.port}/metrics") as resp:
                text = await resp.text()
            buckets: dict[float, float] = {}
            for line in text.splitlines():
                if line.startswith("crm_outbox_publish_delay_seconds_bucket{"):
                    le = line.split('le="', 1)[1].split('"', 1)[0]
                    buckets[float(le)] = float(line.rsplit(" ", 1)[1])
            result[name.removesuffix("-relay")] = buckets
    return result


def histogram_delta(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> dict[str, Any]:
    result = {}
    for service, buckets in after.items():
        delta = sorted((le, n - before.get(service, {}).get(le, 0.0)) for le, n in buckets.items())
        if delta and delta[-1][1] > 0:
            result[service] = {
                "n": int(delta[-1][1]),
                "p50": histogram_quantile(delta, 0.50) * 1000,
                "p99": histogram_quantile(delta, 0.99) * 1000,
            }
    return result


# ---- the alert observer (its own process) -------------------------------------------------------------


async def observe(dsn: str) -> None:
    """Print "<customer_id> <reason> <monotonic seconds>" for every alert insert, when its transaction commits."""
    conn = await asyncpg.connect(dsn)
    out = sys.stdout

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        out.write(f"{payload} {time.monotonic():.6f}\n")
        out.flush()

    await conn.add_listener(ALERT_CHANNEL, on_notify)
    out.write("ready\n")
    out.flush()
    await asyncio.get_running_loop().create_future()  # until terminated


async def install_alert_trigger(infra: Infra) -> None:
    conn = await asyncpg.connect(infra.database_url("retention", "postgresql"))
    try:
        await conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION bench_alert_committed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{ALERT_CHANNEL}', NEW.customer_id || ' ' || NEW.reason); RETURN NULL; END $$;
            DROP TRIGGER IF EXISTS bench_alert_committed ON alerts;
            CREATE TRIGGER bench_alert_committed AFTER INSERT ON alerts
                FOR EACH ROW EXECUTE FUNCTION bench_alert_committed();
            """
        )
    finally:
        await conn.close()


class AlertObserver:
    """Runs the observer process and keeps the commit time of each customer's first severe-complaint alert."""

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        self.committed: dict[str, float] = {}
        self.on_commit: Callable[[str, float], None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        dsn = self.infra.database_url("retention", "postgresql")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.pipeline", "--observe", dsn, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"alert observer did not start: {line!r}")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            customer_id, reason, at = line.decode().split()
            if reason == "severe_complaint" and customer_id not in self.committed:
                self.committed[customer_id] = float(at)
                if self.on_commit is not None:
                    self.on_commit(customer_id, float(at))

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()


# ---- the floor: a bare produce -> consume round trip on the same broker --------------------------------


class FloorProbe:
    def __init__(self, infra: Infra) -> None:
        self.kafka = KafkaSettings(bootstrap_servers=infra.kafka)
        self.received: dict[str, float] = {}
        self._producer = make_producer(self.kafka, client_id="bench-floor")
        self._consumer = make_consumer(
            self.kafka, FLOOR_TOPIC, group_id=f"bench-floor-{uuid.uuid4().hex[:8]}", client_id="bench-floor",
            max_records=500,
        )  # fmt: skip
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topic(self.kafka, FLOOR_TOPIC)
        await self._producer.start()
        await self._consumer.start()
        self._reader = asyncio.create_task(self._read())
        # Until the group owns its partitions and a message makes the round trip.
        for attempt in range(600):
            key = f"warm-{attempt}"
            await self._producer.send_and_wait(FLOOR_TOPIC, key.encode(), key=key.encode())
            await asyncio.sleep(0.1)
            if key in self.received:
                return
        raise TimeoutError("floor probe: no round trip")

    async def _read(self) -> None:
        async for record in self._consumer:
            self.received[record.value.decode()] = time.monotonic()

    async def run(self, rate: float, seconds: float, start: float) -> list[float]:
        """Open loop at the given rate from start; round-trip seconds from each message's scheduled time."""
        phase = uuid.uuid4().hex[:8]
        total = int(rate * seconds)
        scheduled: dict[str, float] = {}
        sends = []
        for n in range(total):
            at = start + n / rate
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            key = f"{phase}-{n}"
            scheduled[key] = at
            sends.append(await self._producer.send(FLOOR_TOPIC, key.encode(), key=str(n % 97).encode()))
        await asyncio.gather(*sends)
        await wait_until(lambda: all(k in self.received for k in scheduled), 30)
        return [self.received[k] - at for k, at in scheduled.items() if k in self.received]

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for client in (self._consumer, self._producer):
            with contextlib.suppress(Exception):
                await client.stop()


# ---- open-loop load through the gateway --------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    scheduled: float
    done: float
    status: int
    key: str
    items: int = 1  # interactions the request carried (a bulk request: its rows)


async def open_loop(
    http: aiohttp.ClientSession,
    url: str,
    rate: float,
    seconds: float,
    body_for: Callable[[int], tuple[str, dict[str, Any]]],
    *,
    start: float,
    progress: Callable[[list[Outcome], int], Awaitable[None]] | None = None,
    progress_every_s: float = 2.0,
    items_of: Callable[[bytes], int] | None = None,
) -> list[Outcome]:
    """POST request n at start + n/rate, whatever earlier answers are doing; latency from that scheduled time.

    items_of: how many interactions a 2xx answer acknowledges (bulk requests); one per request without it.
    """
    total = int(rate * seconds)
    outcomes: list[Outcome] = []
    in_flight: set[asyncio.Task[None]] = set()

    async def one(n: int, scheduled: float) -> None:
        key, body = body_for(n)
        status, items = 0, 1
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.post(url, data=orjson.dumps(body), headers={"content-type": "application/json"}) as resp:
                answer = await resp.read()
                status = resp.status
                if items_of is not None and 200 <= status < 300:
                    items = items_of(answer)
        outcomes.append(Outcome(scheduled, time.monotonic(), status, key, items))

    async def report() -> None:
        # Its own task, so a slow progress probe never delays the schedule.
        while True:
            await asyncio.sleep(progress_every_s)
            assert progress is not None
            await progress(outcomes, len(in_flight))

    reporter = asyncio.create_task(report()) if progress is not None else None
    try:
        n = 0
        while n < total:
            now = time.monotonic()
            # Every request that is due goes out now, so a late wake-up never lowers the offered rate.
            while n < total and start + n / rate <= now:
                task = asyncio.create_task(one(n, start + n / rate))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            if n < total:
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        while in_flight:
            await asyncio.wait(set(in_flight))
    finally:
        if reporter is not None:
            reporter.cancel()
    return outcomes


# ---- the run --------------------------------------------------------------------------------------------


@dataclass
class Context:
    infra: Infra
    platform: Platform
    http: aiohttp.ClientSession
    backlog: Backlog
    observer: AlertObserver
    floor: FloorProbe
    fresh: list[str] = field(default_factory=list)  # customers without an alert yet
    pool: list[str] = field(default_factory=list)  # customers for the mixed stream
    memory: dict[str, float] = field(default_factory=dict)  # highest seen per process
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> process -> cores busy
    durations: dict[str, float] = field(default_factory=dict)  # phase -> seconds

    @property
    def api(self) -> str:
        return f"{self.infra.gateway}/api/v1"

    def pids(self) -> dict[str, list[int]]:
        # Looked up every time: database backends come and go with the pools.
        return watched_processes(self.infra, self.platform)

    def note_memory(self) -> None:
        for name, mib in memory_mib(self.pids()).items():
            self.memory[name] = max(self.memory.get(name, 0.0), mib)

    async def phase_cpu(self, phase: str, body: Awaitable[Any]) -> Any:
        before, started = cpu_snapshot(self.pids()), time.monotonic()
        try:
            return await body
        finally:
            elapsed = time.monotonic() - started
            self.durations[phase] = elapsed
            after = cpu_snapshot(self.pids())
            self.cpu[phase] = {n: round((after[n] - before.get(n, 0.0)) / elapsed, 3) for n in after}
            self.note_memory()


async def create_customers(ctx: Context, count: int, tag: str) -> tuple[list[str], dict[str, float]]:
    """count customers through the bulk import; returns their ids and each group's customer.created apply rate.

    The rate is count / (time from the first bulk commit to the group's lag reaching zero): a group faster
    than the import shows the import's pace, a slower one its own.
    """
    ids: list[str] = []
    started = time.monotonic()
    first_commit = None
    for offset in range(0, count, 5000):
        rows = [
            {"name": f"Bench {tag} {i}", "kind": "person", "owner": "bench", "segment": "bench"}
            for i in range(offset, min(count, offset + 5000))
        ]
        async with ctx.http.post(f"{ctx.api}/customers/bulk", json={"rows": rows}) as resp:
            body = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"bulk import answered {resp.status}: {str(body)[:500]}")
        first_commit = first_commit or time.monotonic()
        ids += [r["id"] for r in body["rows"] if r["status"] == "created"]
    log(f"{len(ids)} customers created in {time.monotonic() - started:.1f} s; waiting for every consumer to apply them")
    # Every customer.created is on Kafka before lag can tell anything.
    for _ in range(3000):
        if not (await ctx.backlog.sample())["outbox"]["customer"]:
            break
        await asyncio.sleep(0.1)
    readers = [g for g, consumed in ctx.backlog.groups.items() if topics.CUSTOMER in consumed]
    done: dict[str, float] = {}
    while len(done) < len(readers):
        sample = await ctx.backlog.sample()
        for group in readers:
            if sample["lag"][group] == 0 and group not in done:
                done[group] = time.monotonic() - (first_commit or started)
        if time.monotonic() - started > 900:
            raise TimeoutError(f"customer.created not applied within 900 s: {sample}")
        await asyncio.sleep(0.1)
    await ctx.backlog.wait_drained(120)
    rates = {g: round(len(ids) / s, 1) for g, s in done.items()}
    log(f"customer.created applied per group (events/s): {rates}")
    return ids, rates


async def latency_phase(ctx: Context, rate: float, seconds: float) -> dict[str, Any]:
    total = int(rate * seconds)
    if len(ctx.fresh) < total:
        raise RuntimeError(f"need {total} fresh customers, have {len(ctx.fresh)}")
    customers, ctx.fresh = ctx.fresh[:total], ctx.fresh[total:]
    sampled = set(customers[::VISIBLE_SAMPLE])
    visible: dict[str, float] = {}
    reads: set[asyncio.Task[None]] = set()

    async def read_back(customer_id: str) -> None:
        for _ in range(500):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                async with ctx.http.get(
                    f"{ctx.api}/alerts", params={"customer_id": customer_id, "reason": "severe_complaint"}
                ) as resp:
                    body = await resp.read()
                if resp.status == 200 and orjson.loads(body).get("items"):
                    visible[customer_id] = time.monotonic()
                    return
            await asyncio.sleep(0.005)

    def on_commit(customer_id: str, _at: float) -> None:
        if customer_id in sampled:
            task = asyncio.create_task(read_back(customer_id))
            reads.add(task)
            task.add_done_callback(reads.discard)

    def complaint(n: int) -> tuple[str, dict[str, Any]]:
        cid = customers[n]
        return cid, {
            "customer_id": cid,
            "type": "complaint",
            "channel": "phone",
            "severity": "high",
            "category": "delivery",
            "text": "parcel arrived broken",
            "external_id": f"bench-{uuid.uuid4()}",
        }

    async def progress(outcomes: list[Outcome], in_flight: int) -> None:
        ok = sum(1 for o in outcomes if o.status == 201)
        log(f"  {rate:.0f}/s: {len(outcomes)} answered ({ok} x 201), {in_flight} in flight, "
            f"{len(ctx.observer.committed)} alerts committed")  # fmt: skip

    ctx.observer.on_commit = on_commit
    hist_before = await scrape_outbox_histograms(ctx.http, ctx.platform)
    since = datetime.now(UTC)
    start = time.monotonic() + 0.2
    log(f"latency at {rate:.0f}/s for {seconds:.0f} s: {total} complaints, each a fresh customer")
    outcomes, floor = await asyncio.gather(
        open_loop(ctx.http, f"{ctx.api}/interactions", rate, seconds, complaint, start=start, progress=progress),
        ctx.floor.run(rate, seconds, start),
    )
    acked = {o.key: o for o in outcomes if o.status == 201}
    await wait_until(lambda: all(c in ctx.observer.committed for c in acked), COMMIT_WAIT_S)
    await wait_until(lambda: not reads, 30)
    await ctx.backlog.wait_drained(COMMIT_WAIT_S)
    until = datetime.now(UTC)
    hist_after = await scrape_outbox_histograms(ctx.http, ctx.platform)
    ctx.observer.on_commit = None

    http_s = [o.done - o.scheduled for o in acked.values()]
    # The path in two hops, per complaint: up to the interaction relay's ack (HTTP, commit, relay), then
    # Kafka and the retention consumer. CLOCK_MONOTONIC is one clock for every process on the machine,
    # so the observer's commit times and the rows' wall-clock ack times meet through this one offset.
    wall = time.time() - time.monotonic()
    published = await ctx.backlog.first_published("interaction", since, until)
    to_publish_s = [published[c] - wall - o.scheduled for c, o in acked.items() if c in published]
    publish_to_alert_s = [
        ctx.observer.committed[c] + wall - published[c] for c in acked if c in published and c in ctx.observer.committed
    ]
    commit_s = [ctx.observer.committed[c] - o.scheduled for c, o in acked.items() if c in ctx.observer.committed]
    visible_s = [visible[c] - acked[c].scheduled for c in visible if c in acked]
    result = {
        "rate": rate,
        "seconds": seconds,
        "sent": total,
        "acknowledged": len(acked),
        "errors": total - len(acked),
        "alerts_missing": sum(1 for c in acked if c not in ctx.observer.committed),  # within COMMIT_WAIT_S
        "http_201": summary_ms(http_s),
        "alert_committed": summary_ms(commit_s),
        "alert_visible": summary_ms(visible_s),
        "hop_send_to_published": summary_ms(to_publish_s),
        "hop_published_to_alert": summary_ms(publish_to_alert_s),
        "floor": summary_ms(floor),
        "floor_lost": total - len(floor),
        "outbox_exact": await ctx.backlog.outbox_delays(since, until),
        "outbox_histogram": histogram_delta(hist_before, hist_after),
    }
    pipeline_p99, floor_p99 = result["alert_committed"]["p99"], result["floor"]["p99"]
    result["ratio_p99"] = pipeline_p99 / floor_p99 if floor_p99 else float("nan")
    c = result["alert_committed"]
    log(f"  alert committed p50/p95/p99 {c['p50']:.1f}/{c['p95']:.1f}/{c['p99']:.1f} ms; floor p99 "
        f"{floor_p99:.1f} ms; ratio {result['ratio_p99']:.1f}")  # fmt: skip
    return result


def bulk_acknowledged(answer: bytes) -> int:
    report = orjson.loads(answer)
    return int(report["created"]) + int(report["existing"])


async def throughput_step(ctx: Context, rate: float, seconds: float, bulk: int = 1) -> dict[str, Any]:
    """Offered `rate` interactions/s: one per request, or `bulk` per POST /interactions/bulk at rate/bulk requests/s."""
    rng = random.Random(int(rate))
    samples: list[tuple[float, dict[str, Any]]] = []
    start = time.monotonic() + 0.2
    produced_before = await ctx.backlog.produced()

    def body(n: int) -> tuple[str, dict[str, Any]]:
        if bulk > 1:
            return str(n), {"rows": [interaction_body(rng.choice(ctx.pool), rng) for _ in range(bulk)]}
        return str(n), interaction_body(rng.choice(ctx.pool), rng)

    async def progress(outcomes: list[Outcome], in_flight: int) -> None:
        sample = await ctx.backlog.sample()
        samples.append((time.monotonic() - start, sample))
        if len(samples) % 2:
            return  # sampled every second, printed every other
        ok = sum(o.items for o in outcomes if 200 <= o.status < 300)
        log(f"  {rate:.0f}/s: {len(outcomes)} answered ({ok} interactions ok), {in_flight} in flight; backlog: outbox "
            f"{sample['outbox']}, lag {sample['lag']}")  # fmt: skip

    how = f"in bulk requests of {bulk}" if bulk > 1 else "one per request"
    log(f"throughput step {rate:.0f}/s for {seconds:.0f} s (mixed interactions, {how})")
    hist_before = await scrape_outbox_histograms(ctx.http, ctx.platform)
    since = datetime.now(UTC)
    outcomes = await open_loop(
        ctx.http,
        f"{ctx.api}/interactions/bulk" if bulk > 1 else f"{ctx.api}/interactions",
        rate / bulk,
        seconds,
        body,
        start=start,
        progress=progress,
        progress_every_s=1.0,
        items_of=bulk_acknowledged if bulk > 1 else None,
    )
    sent_done = time.monotonic()
    drain_s = await ctx.backlog.wait_drained(120)
    until = datetime.now(UTC)
    produced = await ctx.backlog.produced() - produced_before
    ok = [o for o in outcomes if 200 <= o.status < 300]
    last = max((o.done for o in ok), default=start + seconds)
    achieved = sum(o.items for o in ok) / max(last - start, seconds)
    in_window = [(t, s["total"]) for t, s in samples if seconds / 2 <= t <= seconds]
    growth = slope(in_window)
    produced_rate = produced / max(sent_done - start, seconds)
    statuses: dict[str, int] = {}
    for o in outcomes:
        if not 200 <= o.status < 300:
            statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    # Bounded: it drains quickly once the input stops, and over the second half of the step it either did
    # not grow (trend under 5 % of the event rate) or ended less than one second of events behind; the
    # second clause keeps the sawtooth of batch-wise consumption from reading as growth.
    end_backlog = samples[-1][1]["total"] if samples else 0
    bounded = drain_s <= 5.0 and (growth <= 0.05 * produced_rate or end_backlog <= produced_rate)
    result = {
        "offered": rate,
        "bulk": bulk,
        "seconds": seconds,
        "sent": sum(bulk for _ in outcomes),
        "ok": sum(o.items for o in ok),
        "errors": statuses,
        "achieved": round(achieved, 1),
        "http": summary_ms([o.done - o.scheduled for o in ok]),
        "events_per_s": round(produced_rate, 1),
        "backlog_max": max((s["total"] for _, s in samples), default=0),
        "backlog_end": end_backlog,
        "backlog_samples": [(round(t, 1), s["total"]) for t, s in samples],
        "backlog_growth_per_s": round(growth, 1),
        "drain_s": round(drain_s, 2),
        "bounded": bounded,
        "outbox_exact": await ctx.backlog.outbox_delays(since, until),
        "outbox_histogram": histogram_delta(hist_before, await scrape_outbox_histograms(ctx.http, ctx.platform)),
    }
    result["sustained"] = not statuses and achieved >= 0.95 * rate and bounded
    verdict = "sustained" if result["sustained"] else "NOT sustained"
    log(f"  achieved {achieved:.0f}/s, errors {statuses or 0}, http p99 {result['http']['p99']:.0f} ms, "
        f"backlog growth {growth:.1f}/s, drain {drain_s:.1f} s -> {verdict}")  # fmt: skip
    return result


def infra_from(args: argparse.Namespace) -> Infra:
    """INFRA, with the ports and state directory the command line names instead (to run beside another run)."""
    return Infra(
        args.state_dir or INFRA.state_dir,
        kafka_port=args.kafka_port or INFRA.kafka_port,
        pg_port=args.pg_port or INFRA.pg_port,
        port_offset=INFRA.port_offset if args.port_offset is None else args.port_offset,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    infra = infra_from(args)
    platform = infra.fresh_platform(layout=args.layout, extra_env={**UNTHROTTLED_ENV, **_extra_env(args)})
    for service, count in args.consumers.items():
        # More instances of a service's consumer in its group: they share the topics' partitions.
        first = platform.specs[f"{service}-consumer"]
        for n in range(2, count + 1):
            name = f"{first.name}-{n}"
            platform.specs[name] = another_instance(first, name, first.port + 50 * (n - 1))
    if args.profile is not None:
        profile_processes(platform, args.profile)
    latency_total = sum(int(r * args.latency_seconds) for r in args.latency_rates)
    report: dict[str, Any] = {
        **report_start(args.layout),
        "args": {k: v for k, v in vars(args).items() if k != "observe"},
    }
    try:
        await start_in_order(platform)
        await install_alert_trigger(infra)
        # Idle connections are dropped before uvicorn's 5 s keep-alive ends, so a request never goes out on
        # a connection the server is closing (a client-side race, not a platform error).
        connector = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=3)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=bearer_headers()) as http:
            backlog, observer, floor = Backlog(infra), AlertObserver(infra), FloorProbe(infra)
            await backlog.start()
            await observer.start()
            await floor.start()
            ctx = Context(infra, platform, http, backlog, observer, floor)
            try:
                ids, apply_rates = await ctx.phase_cpu(
                    "setup", create_customers(ctx, latency_total + args.pool, "setup")
                )
                report["customer_created_apply_per_s"] = apply_rates
                # CPU each consumer spent per customer.created (the whole setup phase, so an upper bound).
                report["customer_created_cpu_ms_per_event"] = {
                    group: round(
                        ctx.cpu["setup"].get(f"{group}-consumer", ctx.cpu["setup"].get(group, 0.0))
                        * ctx.durations["setup"]
                        / len(ids)
                        * 1000,
                        2,
                    )
                    for group in apply_rates
                }
                ctx.pool, ctx.fresh = ids[: args.pool], ids[args.pool :]
                # Warm-up: connections, caches and the first-call costs out of the measured phases.
                await open_loop(http, f"{ctx.api}/interactions", 20, 5,
                                lambda n: (str(n), interaction_body(ctx.pool[n % len(ctx.pool)], random.Random(n))),
                                start=time.monotonic())  # fmt: skip
                await backlog.wait_drained(60)
                # What the platform burns with no load at all (polling, heartbeats, housekeeping): a floor
                # under every per-interaction CPU figure at low rates.
                await ctx.phase_cpu("idle", asyncio.sleep(10))
                report["platform_idle_cores"] = round(
                    sum(v for n, v in ctx.cpu["idle"].items() if not n.startswith("bench")), 3
                )
                report["latency"] = []
                for rate in args.latency_rates:
                    result = await ctx.phase_cpu(f"latency {rate:g}/s", latency_phase(ctx, rate, args.latency_seconds))
                    report["latency"].append(result)
                report["throughput"] = []
                for rate in args.rates:
                    step = await ctx.phase_cpu(
                        f"throughput {rate:g}/s", throughput_step(ctx, rate, args.step_seconds, args.bulk)
                    )
                    report["throughput"].append(step)
                    if not step["sustained"] and not args.all_steps:
                        break
                sustained = [s["offered"] for s in report["throughput"] if s["sustained"]]
                report["sustained_per_s"] = max(sustained, default=0)
            finally:
                await floor.stop()
                await observer.stop()
                await backlog.stop()
            report["memory_mib"] = ctx.memory
            report["cpu_cores"] = ctx.cpu
            report["phase_seconds"] = {k: round(v, 1) for k, v in ctx.durations.items()}
            # CPU the platform (services, gateway, broker, database; not the load generator) spent per
            # interaction it acknowledged: the efficiency figure that other load on the machine disturbs least.
            done = {f"latency {r['rate']:g}/s": r["acknowledged"] for r in report["latency"]}
            done |= {f"throughput {s['offered']:g}/s": s["ok"] for s in report["throughput"]}
            report["platform_cpu_ms_per_interaction"] = {
                phase: round(
                    sum(v for n, v in ctx.cpu[phase].items() if not n.startswith("bench"))
                    * ctx.durations[phase]
                    / count
                    * 1000,
                    2,
                )
                for phase, count in done.items()
                if count
            }
            report["load_after"] = os.getloadavg()
    finally:
        platform.stop_all()
    return report


def profile_processes(platform: Platform, into: Path) -> None:
    """Run every platform process under cProfile (CPU clock, bench.profiled): ``<into>/<process>.prof``."""
    into.mkdir(parents=True, exist_ok=True)
    for spec in platform.specs.values():
        assert spec.argv[1] == "-m", spec.argv
        spec.argv = [spec.argv[0], "-m", "bench.profiled", str(into.resolve() / f"{spec.name}.prof"), *spec.argv[2:]]


def _extra_env(args: argparse.Namespace) -> dict[str, str]:
    env = {}
    for service in SERVICES:
        env[f"{service.upper()}_LOG_LEVEL"] = args.log_level
    env["GATEWAY_LOG_LEVEL"] = args.log_level
    return env


# ---- the report -------------------------------------------------------------------------------------------


def _fmt(s: dict[str, float]) -> str:
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f}" if s["n"] else "-"


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(f"\n== pipeline benchmark: {machine['cores']} cores, load average before "
          f"{machine['load_before'][0]:.2f}, after {report.get('load_after', [float('nan')])[0]:.2f}; PostgreSQL, "
          f"Kafka (KRaft); {report.get('layout', '')}")  # fmt: skip
    print(f"\ncustomer.created applied (events/s per consumer group): {report.get('customer_created_apply_per_s')}")
    print(f"consumer CPU per customer.created (ms): {report.get('customer_created_cpu_ms_per_event')}")

    print("\n### complaint -> alert latency (ms, p50 / p95 / p99, from each complaint's scheduled send time)\n")
    print(
        f"| rate | complaints | errors | no alert within {COMMIT_WAIT_S:.0f} s | 201 from gateway | alert committed "
        "| alert visible via gateway (1 in 10) | floor: Kafka produce->consume | pipeline p99 / floor p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in report.get("latency", []):
        print(f"| {r['rate']:g}/s | {r['sent']} | {r['errors']} | {r['alerts_missing']} | "
              f"{_fmt(r['http_201'])} | {_fmt(r['alert_committed'])} | {_fmt(r['alert_visible'])} | "
              f"{_fmt(r['floor'])} | {r['ratio_p99']:.1f} |")  # fmt: skip

    print("\n### complaint -> alert by hop (ms, p50 / p95 / p99): scheduled send -> interaction relay's ack "
          "(gateway, API commit, relay), then ack -> alert committed (Kafka, retention consumer)\n")  # fmt: skip
    print("| rate | send -> published | published -> alert committed |\n|---|---|---|")
    for r in report.get("latency", []):
        if "hop_send_to_published" in r:
            print(f"| {r['rate']:g}/s | {_fmt(r['hop_send_to_published'])} | {_fmt(r['hop_published_to_alert'])} |")

    print("\n### outbox commit -> publish (ms, p50 / p99; exact from the rows, histogram interpolation in brackets)\n")
    phases = [(f"latency {r['rate']:g}/s", r) for r in report.get("latency", [])]
    phases += [(f"throughput {s['offered']:g}/s", s) for s in report.get("throughput", [])]
    print("| phase | " + " | ".join(SERVICES) + " |")
    print("|---|" + "---|" * len(SERVICES))
    for name, r in phases:
        cells = []
        for service in SERVICES:
            exact, hist = r["outbox_exact"].get(service), r["outbox_histogram"].get(service)
            if not exact:
                cells.append("-")
                continue
            cell = f"{exact['p50']:.1f} / {exact['p99']:.1f} (n={exact['n']})"
            if hist:
                cell += f" [{hist['p50']:.1f} / {hist['p99']:.1f}]"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")

    steps = report.get("throughput", [])
    how = f"in bulk requests of {steps[0]['bulk']}" if steps and steps[0].get("bulk", 1) > 1 else "one per request"
    print(f"\n### throughput (open loop through the gateway; mixed purchases, complaints, NPS answers, {how})\n")
    print("| offered/s | achieved/s | errors | http p50 / p95 / p99 ms | events/s on Kafka | max backlog "
          "| backlog growth/s | drain s | sustained |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for s in report.get("throughput", []):
        print(f"| {s['offered']:g} | {s['achieved']:g} | {sum(s['errors'].values())} | {_fmt(s['http'])} | "
              f"{s['events_per_s']:g} | {s['backlog_max']} | {s['backlog_growth_per_s']:g} | {s['drain_s']:g} | "
              f"{'yes' if s['sustained'] else 'no'} |")  # fmt: skip
    print(f"\nsustained: {report.get('sustained_per_s', 0):g} interactions/s (target >= 500)")

    print("\n### resident memory (MiB, highest seen; PostgreSQL: PSS of the server and its backends)\n")
    memory = report.get("memory_mib", {})
    print("| process | MiB |\n|---|---|")
    for name, mib in memory.items():
        print(f"| {name} | {mib:.0f} |")

    print(f"\nplatform CPU per acknowledged interaction (ms): {report.get('platform_cpu_ms_per_interaction')}")
    print(f"platform CPU with no load (cores): {report.get('platform_idle_cores')}")
    print("\n### CPU (cores busy, per phase)\n")
    cpu = report.get("cpu_cores", {})
    names = list(memory)
    print("| phase | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for phase, per in cpu.items():
        print(f"| {phase} | " + " | ".join(f"{per.get(n, 0):.2f}" for n in names) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    rates = lambda text: [float(x) for x in text.split(",") if x]  # noqa: E731
    instances = lambda text: {k: int(v) for k, v in (pair.split("=", 1) for pair in text.split(",") if pair)}  # noqa: E731
    parser.add_argument("--latency-rates", type=rates, default=[50.0, 200.0], help="complaints/s, comma-separated")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--rates", type=rates, default=[50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0, 600.0],
                        help="throughput steps, interactions/s; stops after the first step not sustained")  # fmt: skip
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--bulk", type=int, default=1, help="interactions per request in the throughput steps "
                        "(> 1: POST /interactions/bulk, as an ERP import sends them)")  # fmt: skip
    parser.add_argument("--consumers", type=instances, default={}, help="consumer instances per service, e.g. "
                        "retention=2 (default one each)")  # fmt: skip
    parser.add_argument("--all-steps", action="store_true", help="run every step even after one fails")
    parser.add_argument("--pool", type=int, default=1000, help="customers the mixed stream picks from")
    parser.add_argument("--connections", type=int, default=256, help="load generator's connections to the gateway")
    parser.add_argument("--log-level", default="INFO", help="of every platform process (INFO: their default)")
    parser.add_argument(
        "--layout", choices=sorted(LAYOUTS), default="split", help="how each service's roles are spread over processes"
    )
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running afterwards")
    parser.add_argument("--json", type=Path, help="where to write the report (default <state dir>/pipeline.json)")
    parser.add_argument("--state-dir", type=Path, help=f"private infra files (default {INFRA.state_dir})")
    parser.add_argument("--kafka-port", type=int, help=f"the broker's port; its controller's is one more "
                        f"(default {INFRA.kafka_port})")  # fmt: skip
    parser.add_argument("--pg-port", type=int, help=f"PostgreSQL's port (default {INFRA.pg_port})")
    parser.add_argument("--port-offset", type=int, help=f"added to every service's and the gateway's port; they "
                        f"must stay under 32768 (default {INFRA.port_offset})")  # fmt: skip
    parser.add_argument("--profile", type=Path, help="write a CPU profile of each platform process to this folder "
                        "(cProfile inflates CPU: take the shares, not the figures)")  # fmt: skip
    parser.add_argument("--observe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.layout == "combined" and args.consumers:
        parser.error("--consumers needs a consumer process per service (--layout split or consumer-apart)")
    if args.observe:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(observe(args.observe))
        return
    infra = infra_from(args)
    report = run_on_fresh_infra(infra, "bench.pipeline", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json or infra.state_dir / "pipeline.json", print_report)


if __name__ == "__main__":
    main()
