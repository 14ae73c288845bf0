"""What tracing adds to a consumer's path, in one process on PostgreSQL: ``python -m bench.tracing_path``.

    .venv/bin/python -m bench.tracing_path [--service retention|scoring] [--interactions 8000]
                                           [--warm 6000] [--batch 20] [--block 10] [--profile DIR]

The records the platform would publish for a stream of interactions (bench.consumer_path's stream: 60 %
purchases, 25 % complaints, 15 % NPS answers, each followed by its score.updated) are applied through the
service's own consumer (`EventConsumer.apply_batch`: before-batch hook, handlers, inbox, outbox), and the
outbox rows each batch wrote are then given their relay's `outbox publish` span (the relay's traced path
without the broker), with tracing off and on at 100 % sampling alternately: blocks of ``--block``
batches, off, on, off, on ... With tracing on the records carry the trace context a relay would have put in
their headers and envelopes (a trace per interaction), and spans are exported over OTLP/HTTP to a receiver in
a separate process that only counts them, so the export (batching, encoding, the POST) is paid here.

Reported: this process's CPU (time.process_time: the event loop and the span processor's export thread)
per record and per interaction in each mode, the ratio on / off as the median of the ratios of
neighbouring blocks and as the ratio of the totals, the spans received. `--profile DIR` saves a cProfile
of the off and of the on blocks (``off.prof``, ``on.prof``) to compare where the extra CPU goes.
PostgreSQL runs privately under .state/tracing-path on port 55474 (apart from bench.consumer_path's).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import bindparam, func, select, update

from bench import consumer_path
from bench.consumer_path import CUSTOMERS, stream
from contracts.customer import CustomerCreated
from servicekit import tracing
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent
from servicekit.inbox.consumer import EventConsumer
from servicekit.migrations import upgrade
from servicekit.settings import REPO_ROOT
from servicekit.tables import OUTBOX

consumer_path.STATE_DIR = REPO_ROOT / ".state" / "tracing-path"
consumer_path.PG_PORT = 55474
RECEIVER_PORT = 24399


def log(message: str) -> None:
    print(f"[tracing-path {time.strftime('%H:%M:%S')}] {message}", flush=True)


def traced(record: ConsumerRecord, trace_id: int, n: int) -> ConsumerRecord:
    """`record` as the relay would publish it with tracing on: the writer's context in the envelope, the
    publish span's in the headers."""
    writer = f"00-{trace_id:032x}-{(n * 2 + 1):016x}-01"
    publish = f"00-{trace_id:032x}-{(n * 2 + 2):016x}-01"
    envelope = CloudEvent.model_validate_json(record.value)
    envelope.traceparent = writer
    headers = [*record.headers, ("traceparent", publish.encode())]
    value = envelope.to_json()
    return ConsumerRecord(record.topic, 0, record.offset, 0, 0, record.key, value, None, 0, 0, headers)


def with_traces(records: list[ConsumerRecord]) -> list[ConsumerRecord]:
    """Each interaction (an interaction.recorded and the events after it) one trace."""
    out, trace_id = [], 0
    for n, record in enumerate(records):
        if dict(record.headers)["ce_type"] == b"interaction.recorded":
            trace_id += 1
        out.append(traced(record, trace_id + (1 << 100), n))
    return out


class GcTimer:
    """Wall time spent in the garbage collector, per mode (a span's objects add to the collector's work)."""

    def __init__(self) -> None:
        self.mode = "off"
        self.seconds: dict[str, float] = {"off": 0.0, "on": 0.0}
        self.full: dict[str, int] = {"off": 0, "on": 0}
        self._started = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds[self.mode] += time.perf_counter() - self._started
        if info["generation"] == 2:
            self.full[self.mode] += 1

    def stop(self) -> None:
        gc.callbacks.remove(self)


_UNPUBLISHED = (
    select(OUTBOX.c.id, OUTBOX.c.topic, OUTBOX.c.headers, OUTBOX.c.created_at)
    .where(OUTBOX.c.published_at.is_(None))
    .order_by(OUTBOX.c.id)
)
_PUBLISHED = update(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True))).values(published_at=func.now())


async def relay_spans(database: Database) -> int:
    """The relay's spans for the rows written since the last call (none while tracing is off), rows marked."""
    async with database.autocommit() as conn:
        rows = (await conn.execute(_UNPUBLISHED)).all()
        if tracing.enabled():
            now = time.time()
            for row in rows:
                wait_s = max(now - row.created_at.timestamp(), 0.0)
                span, _headers = tracing.start_publish_span(row.topic, row.headers, wait_s=wait_s)
                span.end()
        if rows:
            await conn.execute(_PUBLISHED, {"ids": [r.id for r in rows]})
    return len(rows)


async def run(
    args: argparse.Namespace, url: str, receiver_url: str
) -> tuple[dict[str, Any], dict[str, cProfile.Profile]]:
    settings_module = __import__(f"services.{args.service}.settings", fromlist=["x"])
    settings = getattr(settings_module, f"{args.service.capitalize()}Settings")(database_url=url)
    spec = __import__(f"services.{args.service}.main", fromlist=["x"]).SPEC
    tracing.setup(args.service, tracing.TracingSettings(exporter_otlp_endpoint=receiver_url))
    tracer = tracing._tracer
    if args.sdk_tracer:  # the platform's spans from the SDK's tracer, as before servicekit.tracing_lean
        from opentelemetry import trace

        tracer = trace.get_tracer("crm.servicekit")
    components = spec.load_components()
    database = Database(url, source=f"/crm/{args.service}")
    consumer = EventConsumer(database, settings, components.handlers, spec.consumes, components.before_batch)

    def mode(on: bool) -> None:
        tracing._tracer = tracer if on else None

    async def apply(records: list[ConsumerRecord]) -> None:
        for start in range(0, len(records), args.batch):
            await consumer.apply_batch([consumer.decode(r) for r in records[start : start + args.batch]])
            await relay_spans(database)

    mode(False)
    start = consumer_path.datetime.now(consumer_path.UTC) - consumer_path.timedelta(days=1)
    customers = [
        consumer_path._record(
            CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i
        )
        for i in range(CUSTOMERS)
    ]
    await apply(customers)
    plain = stream(args.interactions)
    traced_records = with_traces(plain)
    warm = args.warm
    log(f"{CUSTOMERS} customers; warming up on {warm} records (off and on alternately)")
    half = warm // 2
    mode(False)
    await apply(plain[:half])
    mode(True)
    await apply(traced_records[half:warm])
    tracing.shutdown()
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    size = args.block * args.batch
    blocks = [(i, min(i + size, len(plain))) for i in range(warm, len(plain), size)]
    log(f"measuring {len(plain) - warm} records: {len(blocks)} blocks of {args.block} batches of {args.batch}")
    profiles = {"off": cProfile.Profile(), "on": cProfile.Profile()} if args.profile else {}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    collecting = GcTimer()
    seconds: dict[str, float] = {"off": 0.0, "on": 0.0}
    records: dict[str, int] = {"off": 0, "on": 0}
    interactions: dict[str, int] = {"off": 0, "on": 0}
    for n, (lo, hi) in enumerate(blocks):
        on = n % 2 == 1
        name = "on" if on else "off"
        mode(on)
        collecting.mode = name
        chunk = (traced_records if on else plain)[lo:hi]
        profile = profiles.get(name)
        used = time.process_time()
        if profile:
            profile.enable()
        await apply(chunk)
        if on:
            tracing.shutdown()  # the block's spans exported within its own CPU figure
        if profile:
            profile.disable()
        used = time.process_time() - used
        cpu[name].append(used / len(chunk))
        seconds[name] += used
        records[name] += len(chunk)
        interactions[name] += sum(1 for r in chunk if dict(r.headers)["ce_type"] == b"interaction.recorded")
    mode(False)
    collecting.stop()
    await database.dispose()
    pairs = list(zip(cpu["off"], cpu["on"], strict=False))
    ratios = [b / a for a, b in pairs]
    # neighbours the other way round too (on block vs the off block after it): drift cancels out
    ratios += [b / a for a, b in zip(cpu["off"][1:], cpu["on"], strict=False)]
    report = {
        "service": args.service,
        "batch": args.batch,
        "blocks": len(blocks),
        "records": records,
        "ms_per_record": {k: round(1000 * seconds[k] / max(records[k], 1), 4) for k in cpu},
        "ms_per_interaction": {k: round(1000 * seconds[k] / max(interactions[k], 1), 4) for k in cpu},
        "ratio_of_totals": round((seconds["on"] / records["on"]) / (seconds["off"] / records["off"]), 4),
        "gc_ms_per_record": {k: round(1000 * v / max(records[k], 1), 4) for k, v in collecting.seconds.items()},
        "gc_collections_gen2": dict(collecting.full),
        "ratio_median_of_neighbours": round(statistics.median(ratios), 4) if ratios else None,
        "ratio_quartiles": [round(q, 4) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else None,
        "load": os.getloadavg(),
    }
    return report, profiles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_path", description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=("retention", "scoring"), default="retention")
    parser.add_argument("--interactions", type=int, default=8000, help="interactions in the stream")
    parser.add_argument("--warm", type=int, default=6000, help="records applied before measuring")
    parser.add_argument("--batch", type=int, default=20, help="records per consumer batch (transaction)")
    parser.add_argument("--block", type=int, default=10, help="batches per block (blocks alternate off and on)")
    parser.add_argument("--gc-freeze", action="store_true", help="after the warm-up, gc.freeze() every object so far")
    parser.add_argument(
        "--sdk-tracer", action="store_true", help="on blocks: spans from the SDK's tracer instead of the lean one"
    )
    parser.add_argument("--profile", help="save cProfiles of the off and on blocks in this folder")
    args = parser.parse_args(argv)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{consumer_path.PG_PORT}/{args.service}"
    receiver = subprocess.Popen(
        [sys.executable, "-c", "from bench.otlp import OtlpReceiver; import time; "
         f"r = OtlpReceiver(keep=False, port={RECEIVER_PORT}).start(); time.sleep(10**6)"],
        cwd=REPO_ROOT,
    )  # fmt: skip
    consumer_path.pg_ctl("start", args.service)
    try:
        consumer_path.pg_ctl("reset-dbs", args.service)
        upgrade(REPO_ROOT / "services" / args.service / "migrations", url, args.service)
        report, profiles = asyncio.run(run(args, url, f"http://127.0.0.1:{RECEIVER_PORT}"))
    finally:
        consumer_path.pg_ctl("stop", args.service)
        receiver.terminate()
        receiver.wait()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        for name, profile in profiles.items():
            profile.dump_stats(str(Path(args.profile) / f"{name}.prof"))
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
