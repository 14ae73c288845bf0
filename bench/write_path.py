"""The write side per interaction, in process: CPU and statements of the interaction API and its outbox relay.

    .venv/bin/python -m bench.write_path [--single 2000] [--bulk-requests 5] [--bulk-rows 2000]
    make bench-write-path

Starts a private Kafka + PostgreSQL (bench.infra; its own ports and state directory), creates the interaction
service's schema, seeds its customer replica, then in this one process:

1. ``single``: ``--single`` POST /interactions (purchases, complaints and NPS answers in turn, the mix of
   bench.chaos) straight into the service's ASGI app, signed as the gateway signs: middleware, routing,
   validation, the INSERT with its outbox rows, the JSON answer. No HTTP server and no network: those are
   the floor's parts (bench.floor), not the service's own work.
   Beside it, ``floor``: the same posts to bench.floor's bare FastAPI app (one route validating the body as
   ``InteractionCreate`` and returning it) plus one prepared single-row asyncpg INSERT each, in the same
   driver: the least a single post can cost in process, and the single post's ratio to it.
2. ``bulk``: ``--bulk-requests`` POST /interactions/bulk of ``--bulk-rows`` rows each, the same mix.
3. ``relay``: the service's outbox relay (servicekit.outbox.relay, with the platform's producer settings)
   publishes every event the two phases wrote to the real broker, round after round until none is left.
4. ``relay_paced``: the relay's own loop (OutboxRelay.run: woken by NOTIFY, paced rounds) while another
   process commits outbox rows at ``--paced-rate`` interactions/s for ``--paced-seconds`` (copies of the
   rows written above, one or two events a commit, as the API writes them): the relay at a platform's
   ordinary rate, where each round carries a few rows, so its per-round cost shows. This process then runs
   only the relay, so its CPU is the relay's; the statements and rounds are per round and per event.

For each phase: CPU ms of this process per interaction (per event for the relay), statements sent to
PostgreSQL per interaction (each one a round trip; an executemany counts once), PostgreSQL's CPU per
interaction (its postmaster and backends) and the broker's CPU per event in the relay phase. CPU time is
robust under the load of other work on the machine; the wall times are not (the report gives the load
average). One run prints one report and writes it as JSON to .state/bench-write-path/write_path.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event, func, insert, select

from bench.floor import bare_fastapi
from bench.infra import Infra, cpu_seconds, pid_file, postgres_pids, report_start, run_on_fresh_infra, write_report
from servicekit import metrics
from servicekit.auth import internal_headers
from servicekit.kafka import make_producer
from servicekit.outbox.relay import OutboxRelay
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT, KafkaSettings
from servicekit.tables import OUTBOX
from services.interaction.main import SPEC
from services.interaction.models import metadata
from services.interaction.replica.models import KnownCustomer
from services.interaction.settings import InteractionSettings

INFRA = Infra(REPO_ROOT / ".state" / "bench-write-path", kafka_port=19572, pg_port=55587, port_offset=23100)
PRINCIPAL = "role=importer&sub=bench"
CUSTOMERS = 1000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def interaction(customer_id: str, i: int) -> dict[str, Any]:
    """The mix of bench.chaos: purchases 60 %, complaints 25 %, NPS answers 15 %."""
    kind = i % 20
    if kind < 12:
        return {
            "customer_id": customer_id, "type": "purchase", "amount": "42.50", "currency": "EUR", "channel": "web",
            "occurred_at": "2026-11-01T10:00:00Z", "external_id": f"bench-{uuid.uuid4()}",
        }  # fmt: skip
    if kind < 17:
        return {"customer_id": customer_id, "type": "complaint", "severity": "high", "category": "delivery"}
    return {"customer_id": customer_id, "type": "survey", "survey": "nps", "score": 7}


async def asgi_post(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One POST straight into an ASGI app, in process: its status and body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
        "raw_path": path.encode(), "query_string": b"", "headers": headers, "scheme": "http",
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": "", "state": {},
    }  # fmt: skip
    delivered = False
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


async def call(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST into the service's ASGI app, signed for the service's internal authentication."""
    signed = internal_headers("POST", path, body=body, principal=PRINCIPAL)
    headers = [(b"content-type", b"application/json")] + [(k.lower().encode(), v.encode()) for k, v in signed.items()]
    return await asgi_post(app, path, body, headers)


class Meter:
    """CPU of this process, of PostgreSQL and of the broker, and the statements sent, over one phase."""

    def __init__(self, engine: Any) -> None:
        self.statements = 0

        def count(*_: Any) -> None:
            self.statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)

    def snapshot(self) -> dict[str, float]:
        kafka = pid_file(INFRA.state_dir / "kafka" / "kafka.pid")
        postgres = sum(cpu_seconds(p, reaped_children=True) for p in postgres_pids(INFRA.state_dir)[:1])
        postgres += sum(cpu_seconds(p) for p in postgres_pids(INFRA.state_dir)[1:])
        return {
            "process": time.process_time(),
            "postgres": postgres,
            "kafka": cpu_seconds(kafka) if kafka else 0.0,
            "statements": float(self.statements),
            "wall": time.perf_counter(),
        }

    async def phase(self, name: str, units: int, work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        before = self.snapshot()
        await work()
        after = self.snapshot()
        delta = {k: after[k] - before[k] for k in before}
        result = {
            "units": units,
            "process_cpu_ms": round(1000 * delta["process"] / units, 4),
            "postgres_cpu_ms": round(1000 * delta["postgres"] / units, 4),
            "kafka_cpu_ms": round(1000 * delta["kafka"] / units, 4),
            "statements": round(delta["statements"] / units, 4),
            "wall_s": round(delta["wall"], 2),
            "per_s": round(units / delta["wall"], 1),
        }
        log(f"{name}: {result}")
        return result


# The paced writer: a separate process committing copies of template outbox rows (one or two events a
# commit, as the API writes them) at a fixed rate, open loop, with the NOTIFY the writer's INSERT carries.
PACED_WRITER = """
import asyncio, sys, time
import asyncpg
async def main(dsn, rate, seconds, templates):
    ids = [[int(i) for i in group.split(",")] for group in templates.split(";")]
    conn = await asyncpg.connect(dsn)
    copy = await conn.prepare(
        "INSERT INTO outbox (topic, key, payload, headers, event_id, created_at, attempts) "
        "SELECT topic, key, payload, headers, gen_random_uuid()::text, now(), 0 FROM outbox "
        "WHERE id = ANY($1::bigint[]) ORDER BY id RETURNING pg_notify('outbox', '')"
    )
    start = time.monotonic()
    for k in range(int(rate * seconds)):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await copy.fetch(ids[k % len(ids)])
    await conn.close()
asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
"""


def _round_count(service: str) -> float:
    """Rounds the relay has made in this process (its round-size histogram's count)."""
    for family in metrics.OUTBOX_ROUND_ROWS.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("service") == service:
                return sample.value
    return 0.0


async def paced_relay(
    meter: Meter, database: Any, settings: InteractionSettings, args: argparse.Namespace
) -> dict[str, Any]:
    """The relay's loop while another process commits outbox rows at --paced-rate interactions/s."""
    async with database.sessions() as session:
        # Templates: the mix of interaction(): of 20 commits, 12 purchases (one event) and 8 complaints or
        # survey answers (two), each copying rows the single posts wrote.
        first = (await session.execute(select(func.min(OUTBOX.c.id)))).scalar_one()
        sizes = [1 if kind < 12 else 2 for kind in range(20)]
        starts = [first + sum(sizes[:kind]) for kind in range(20)]
        templates = ";".join(",".join(str(start + i) for i in range(n)) for start, n in zip(starts, sizes, strict=True))
        before_id = (await session.execute(select(func.max(OUTBOX.c.id)))).scalar_one()
    relay = OutboxRelay(database, settings)
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(3)  # connected: the producer started, LISTEN on
    rounds_before = _round_count(settings.name)
    dsn = INFRA.database_url("interaction", driver="postgresql")
    command = [sys.executable, "-c", PACED_WRITER, dsn, str(args.paced_rate), str(args.paced_seconds), templates]
    events = polls = 0

    async def work() -> None:
        nonlocal events, polls
        writer = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL)
        assert await writer.wait() == 0
        async with database.sessions() as session:
            written = OUTBOX.c.id > before_id
            while True:  # until the relay has published every row written
                waiting = (
                    await session.execute(
                        select(func.count()).select_from(OUTBOX).where(written, OUTBOX.c.published_at.is_(None))
                    )
                ).scalar_one()
                await session.rollback()
                polls += 1
                if not waiting:
                    break
                await asyncio.sleep(0.2)
            events = (await session.execute(select(func.count()).select_from(OUTBOX).where(written))).scalar_one()

    interactions = int(args.paced_rate * args.paced_seconds)
    result = await meter.phase(f"relay at {args.paced_rate:g} interactions/s", interactions, work)
    rounds = _round_count(settings.name) - rounds_before
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    per_event = interactions / events if events else 0.0
    result |= {
        "events": events,
        "rounds": int(rounds),
        "events_per_round": round(events / rounds, 2) if rounds else None,
        "process_cpu_ms_per_event": round(result["process_cpu_ms"] * per_event, 4),
        # Less this bench's own polls for the end of the phase (and its final count).
        "statements_per_round": round((result["statements"] * interactions - polls - 1) / rounds, 3)
        if rounds
        else None,
    }
    log(f"relay paced: {events} events in {int(rounds)} rounds")
    return result


async def floor(meter: Meter, posts: int) -> dict[str, Any]:
    """bench.floor's bare FastAPI route and one prepared asyncpg INSERT per post, in this driver."""
    app = bare_fastapi()
    connection = await asyncpg.connect(INFRA.database_url("interaction", driver="postgresql"))
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, body jsonb NOT NULL)")
        insert_row = await connection.prepare("INSERT INTO floor_rows (id, body) VALUES ($1, $2) RETURNING id")
        bodies = [orjson.dumps(interaction(f"c-{i % CUSTOMERS}", i)) for i in range(posts)]
        for body in bodies[:50]:  # warm, as the service's phase is
            await call(app, "/interactions", body)

        async def bare() -> None:
            for body in bodies:
                status, answer = await call(app, "/interactions", body)
                assert status == 201, answer
                await insert_row.fetchval(str(uuid.uuid4()), body.decode())

        return await meter.phase("floor: bare FastAPI route + one asyncpg INSERT", posts, bare)
    finally:
        await connection.execute("DROP TABLE IF EXISTS floor_rows")
        await connection.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {**report_start("combined"), "args": {k: v for k, v in vars(args).items() if k != "json"}}
    report["layout"] = "in process: the interaction service's API and relay"
    settings = InteractionSettings(
        database_url=INFRA.database_url("interaction"), kafka=KafkaSettings(bootstrap_servers=INFRA.kafka)
    )
    app = create_app(SPEC, settings, roles=(API,))
    database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = datetime.now(UTC)
        await conn.execute(
            insert(KnownCustomer.__table__),  # type: ignore[attr-defined]
            [{"customer_id": f"c-{i}", "version": 1, "erased": False, "updated_at": now} for i in range(CUSTOMERS)],
        )
    meter = Meter(database.engine)
    phases: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        for i in range(50):  # warm: every statement compiled and cached once
            status, body = await call(app, "/interactions", orjson.dumps(interaction(f"c-{i}", i)))
            assert status == 201, body

        async def singles() -> None:
            for i in range(args.single):
                status, body = await call(app, "/interactions", orjson.dumps(interaction(f"c-{i % CUSTOMERS}", i)))
                assert status == 201, body

        phases["single"] = await meter.phase("single POST /interactions", args.single, singles)
        phases["floor"] = await floor(meter, args.single)
        phases["single"]["floor_ratio"] = round(
            phases["single"]["process_cpu_ms"] / phases["floor"]["process_cpu_ms"], 2
        )
        bodies = [
            orjson.dumps({"rows": [interaction(f"c-{(r * 7 + i) % CUSTOMERS}", i) for i in range(args.bulk_rows)]})
            for r in range(args.bulk_requests)
        ]

        async def bulks() -> None:
            for body in bodies:
                status, answer = await call(app, "/interactions/bulk", body)
                assert status == 200, answer[:500]
                assert orjson.loads(answer)["created"] == args.bulk_rows, answer[:500]

        phases["bulk"] = await meter.phase("POST /interactions/bulk", args.bulk_requests * args.bulk_rows, bulks)
    async with database.sessions() as session:
        events = (await session.execute(select(func.count()).select_from(OUTBOX))).scalar_one()
    relay = OutboxRelay(database, settings)
    producer = make_producer(settings.kafka, client_id="bench-write-path")
    await producer.start()
    try:

        async def publish() -> None:
            while await relay.publish_batch(producer, defer_mark=True):
                pass
            await relay.close()

        phases["relay"] = await meter.phase("outbox relay", events, publish)
    finally:
        await producer.stop()
    if args.paced_seconds > 0:
        phases["relay_paced"] = await paced_relay(meter, database, settings, args)
    async with database.sessions() as session:
        left = (
            await session.execute(select(func.count()).select_from(OUTBOX).where(OUTBOX.c.published_at.is_(None)))
        ).scalar_one()
    await database.dispose()
    report["events"] = events
    report["unpublished_after"] = left
    report["events_per_interaction"] = round(events / (50 + args.single + args.bulk_requests * args.bulk_rows), 3)
    report["phases"] = phases
    report["load_after"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(f"\nmachine: {machine['cores']} cores, load average {machine['load_before'][0]:.1f} before, "
          f"{report['load_after'][0]:.1f} after; {report['layout']}")  # fmt: skip
    print(f"events in the outbox: {report['events']} ({report['events_per_interaction']} per interaction), "
          f"unpublished after the relay: {report['unpublished_after']}")  # fmt: skip
    print("\n| phase | units | this process CPU ms | PostgreSQL CPU ms | broker CPU ms | statements | per s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, p in report["phases"].items():
        unit = "events" if name == "relay" else "interactions"
        if name == "relay_paced":
            rate = report["args"]["paced_rate"]
            print(f"| relay at {rate:g} interactions/s | {p['units']} interactions | {p['process_cpu_ms']} "
                  f"| {p['postgres_cpu_ms']} | {p['kafka_cpu_ms']} | {p['statements']} | {p['per_s']} |")  # fmt: skip
            continue
        print(f"| {name} | {p['units']} {unit} | {p['process_cpu_ms']} | {p['postgres_cpu_ms']} | "
              f"{p['kafka_cpu_ms']} | {p['statements']} | {p['per_s']} |")  # fmt: skip
    single, bare = report["phases"].get("single"), report["phases"].get("floor")
    if single and bare:
        print(f"\na single post costs this process {single['floor_ratio']}x the floor "
              f"({single['process_cpu_ms']} ms against {bare['process_cpu_ms']} ms)")  # fmt: skip
    paced = report["phases"].get("relay_paced")
    if paced:
        rate = report["args"]["paced_rate"]
        print(f"\nrelay at {rate:g} interactions/s: {paced['events']} events in {paced['rounds']} rounds "
              f"({paced['events_per_round']} a round), relay CPU {paced['process_cpu_ms_per_event']} ms per event, "
              f"{paced['statements_per_round']} statements a round "
              "(PostgreSQL's CPU there includes the writer's commits)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=2000, help="single posts (default %(default)s)")
    parser.add_argument("--bulk-requests", type=int, default=5, help="bulk requests (default %(default)s)")
    parser.add_argument("--bulk-rows", type=int, default=2000, help="rows per bulk request (default %(default)s)")
    parser.add_argument("--paced-rate", type=float, default=200.0, help="interactions/s of the paced relay phase")
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="its length; 0 leaves it out")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "write_path.json")
    args = parser.parse_args()
    report = run_on_fresh_infra(INFRA, "write_path", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
