"""A consumer's handler path on PostgreSQL: CPU per event, PostgreSQL's CPU, and its costliest statements.

    .venv/bin/python -m bench.consumer_path [--service retention|scoring] [--interactions 12000]
                                            [--warm 14000] [--batch 150] [--statements 8] [--profile]
                                            [--no-gc-freeze] [--pg-port 55473]

The same records the platform would publish for a stream of interactions (60 % purchases, 25 %
complaints, 15 % NPS answers, each followed by its score.updated, for 1,000 customers created first)
are decoded and applied through the service's own consumer (`EventConsumer.apply_batch`, with its
before-batch hook, inbox and outbox) in batches like a consumer's polls, without Kafka. The first
`--warm` records build up state (alerts, history, inbox) and are not measured, so the figures are
those of a steady state on tables that have grown. Reported: this process's CPU per record and per
interaction (time.process_time, decoding included), the PostgreSQL server's CPU over the same span
(utime + stime of its postmaster and backends), how many statements the consumer sent (each one a
round trip and a socket write), and the statements that took the most server time (pg_stat_statements),
and how much of the CPU went to the cyclic garbage collector. Like a service's process, the bench freezes
what start-up built before it applies anything (servicekit.runner.freeze_startup_objects; --no-gc-freeze:
not). `--profile` adds a cProfile of the measured span (top functions by cumulative and own time).
PostgreSQL runs privately under .state/consumer-path on port 55473 (--pg-port: another).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import pstats
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import asyncpg
from aiokafka.structs import ConsumerRecord
from sqlalchemy import event, text

from bench.infra import cpu_seconds, postgres_pids
from contracts.customer import CustomerCreated
from contracts.interaction import ComplaintOpened, InteractionRecorded, SurveyAnswered
from contracts.scoring import Factor, ScoreUpdated, ScoreValues
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent, EventData
from servicekit.inbox.consumer import EventConsumer
from servicekit.migrations import upgrade
from servicekit.runner import freeze_startup_objects
from servicekit.settings import REPO_ROOT

STATE_DIR = REPO_ROOT / ".state" / "consumer-path"
PG_PORT = 55473
CUSTOMERS = 1000
SERVICES = ("retention", "scoring")


def log(message: str) -> None:
    print(f"[consumer-path {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _record(data: EventData, offset: int) -> ConsumerRecord:
    envelope = CloudEvent.wrap(data, source="/bench")
    headers = [("content-type", b"application/cloudevents+json"), ("ce_type", envelope.type.encode())]
    key = str(getattr(data, "customer_id", "")).encode()
    return ConsumerRecord(data.topic, 0, offset, 0, 0, key, envelope.to_json(), None, 0, 0, headers)


def interaction_events(
    rng: random.Random, customer: str, at: datetime, previous: Mapping[str, ScoreValues]
) -> tuple[list[EventData], ScoreValues]:
    """One interaction of `customer` at `at` (a purchase, complaint or survey answer with its events) and the
    score update it causes, drawn from `rng`; also the new score values."""
    events: list[EventData] = []
    roll = rng.random()
    kind = "purchase" if roll < 0.6 else "complaint" if roll < 0.85 else "survey"
    extra: dict[str, Any] = {"purchase": {"amount": 25.0, "currency": "EUR"}, "survey": {}}.get(
        kind, {"severity": "high", "category": "delivery"}
    )
    events.append(
        InteractionRecorded(customer_id=customer, interaction_id=str(uuid.uuid4()), type=kind, occurred_at=at, **extra)
    )
    if kind == "complaint":
        severity = rng.choice(["low", "medium", "high", "critical"])
        events.append(
            ComplaintOpened(
                customer_id=customer,
                complaint_id=str(uuid.uuid4()),
                category="delivery",
                severity=severity,
                opened_at=at,
                due_at=at + timedelta(days=2),
            )
        )
    elif kind == "survey":
        events.append(
            SurveyAnswered(
                customer_id=customer,
                interaction_id=str(uuid.uuid4()),
                survey="nps",
                score=rng.randint(0, 10),
                answered_at=at,
            )
        )
    current = ScoreValues(
        churn_risk=round(rng.uniform(0.1, 0.95), 3),
        health=0.5,
        value_tier=rng.choice(["platinum", "gold", "silver", "bronze"]),
        lifecycle_stage=rng.choice(["active", "at_risk", "decline"]),
        p_alive=round(rng.uniform(0.1, 1.0), 3),
        clv=100.0,
    )
    events.append(
        ScoreUpdated(
            customer_id=customer,
            previous=previous.get(customer),
            current=current,
            factors=[Factor(code=f"f{k}", label=f"factor {k}", contribution=0.1) for k in range(3)],
            model_version="rules-1",
            caused_by=str(uuid.uuid4()),
            computed_at=at,
        )
    )
    return events, current


def stream(interactions: int, seed: int = 1) -> list[ConsumerRecord]:
    """The records of `interactions` interactions (and their complaint, survey and score events), in order."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    previous: dict[str, ScoreValues] = {}
    events: list[EventData] = []
    for i in range(interactions):
        customer = f"c{rng.randrange(CUSTOMERS):04d}"
        at = start + timedelta(milliseconds=2 * i)
        events_of, current = interaction_events(rng, customer, at, previous)
        events += events_of
        previous[customer] = current
    return [_record(data, offset) for offset, data in enumerate(events)]


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of each process of the private PostgreSQL server (postmaster and backends)."""
    seconds = {}
    for pid in postgres_pids(STATE_DIR):
        with contextlib.suppress(OSError):  # a backend that just exited
            seconds[pid] = cpu_seconds(pid)
    return seconds


def pg_ctl(command: str, service: str, port: int = PG_PORT) -> None:
    env = {**os.environ, "CRM_STATE_DIR": str(STATE_DIR), "PG_PORT": str(port), "PG_DATABASES": service}
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "postgres.sh"), command], check=True, env=env)


def service_consumer(service: str, url: str) -> tuple[Database, EventConsumer]:
    """The service's consumer on url, built as its consumer process builds it (its settings, handlers and
    batch hook)."""
    settings_module = import_module(f"services.{service}.settings")
    settings = getattr(settings_module, f"{service.capitalize()}Settings")(database_url=url)
    spec = import_module(f"services.{service}.main").SPEC
    components = spec.load_components()
    database = Database(url, source=f"/crm/{service}")
    return database, EventConsumer(database, settings, components.handlers, spec.consumes, components.before_batch)


async def apply(consumer: EventConsumer, records: list[ConsumerRecord], batch: int) -> None:
    for start in range(0, len(records), batch):
        await consumer.apply_batch([consumer.decode(r) for r in records[start : start + batch]])


async def measure(args: argparse.Namespace, url: str) -> None:
    database, consumer = service_consumer(args.service, url)
    if not args.no_gc_freeze:
        freeze_startup_objects()  # as the service's process does once started (servicekit.runner)
    async with database.engine.connect() as conn:
        await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
        await conn.commit()
    start = datetime.now(UTC) - timedelta(days=1)
    customers = [
        _record(CustomerCreated(customer_id=f"c{i:04d}", kind="person", status="active", created_at=start), i)
        for i in range(CUSTOMERS)
    ]
    await apply(consumer, customers, 200)
    records = stream(args.interactions)
    warm, measured = records[: args.warm], records[args.warm :]
    log(f"{len(customers)} customers created; warming up on {len(warm)} records")
    await apply(consumer, warm, args.batch)
    async with database.engine.connect() as conn:
        await conn.execute(text("SELECT pg_stat_statements_reset()"))
    log(f"measuring {len(measured)} records in batches of {args.batch}")
    profile = cProfile.Profile() if args.profile else None
    sent: Counter[str] = Counter()  # statements the consumer sent, one per execute or executemany
    kinds: Counter[str] = Counter()  # the same, by the statement's first words

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent["executemany" if executemany else "execute"] += 1
        kinds[" ".join(statement.split()[:6])[:70] + (" (many)" if executemany else "")] += 1

    collections: Counter[int] = Counter()  # the cyclic garbage collector's runs by generation, and its CPU
    gc_cpu = [0.0, 0.0]  # seconds so far, CPU time at the start of the current run

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_cpu[1] = time.process_time()
        else:
            gc_cpu[0] += time.process_time() - gc_cpu[1]
            collections[info["generation"]] += 1

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    gc.callbacks.append(collected)
    cpu, wall, server_before = time.process_time(), time.perf_counter(), postgres_cpu()
    if profile:
        profile.enable()
    await apply(consumer, measured, args.batch)
    if profile:
        profile.disable()
    gc.callbacks.remove(collected)
    event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server = sum(s - server_before.get(pid, 0.0) for pid, s in postgres_cpu().items())
    interactions = sum(1 for r in measured if dict(r.headers or ())["ce_type"] == b"interaction.recorded")
    batches = -(-len(measured) // args.batch)
    print(
        f"\n{args.service} consumer, {len(measured)} records ({interactions} interactions) after {len(warm)} "
        f"warm-up records, batches of {args.batch}{' (profiled: CPU inflated)' if profile else ''}:\n"
        f"  consumer CPU {cpu:.2f} s ({1000 * cpu / len(measured):.3f} ms per record, "
        f"{1000 * cpu / interactions:.3f} ms per interaction), wall {wall:.2f} s\n"
        f"  of which garbage collection {gc_cpu[0]:.2f} s ({1000 * gc_cpu[0] / interactions:.3f} ms per interaction; "
        f"runs of generation 0/1/2: {collections[0]}/{collections[1]}/{collections[2]})\n"
        f"  PostgreSQL CPU {server:.2f} s ({1000 * server / interactions:.3f} ms per interaction)\n"
        f"  statements sent {sum(sent.values())} ({sent['executemany']} of them executemany), "
        f"{sum(sent.values()) / batches:.1f} per batch, {sum(sent.values()) / interactions:.2f} per interaction\n"
    )
    print("| sent | per batch | statement (client side) |\n|---|---|---|")
    for kind, n in kinds.most_common(args.statements):
        print(f"| {n} | {n / batches:.1f} | `{kind}` |")
    print()
    async with database.engine.connect() as conn:
        spent = await conn.execute(
            text(
                "SELECT coalesce(sum(total_exec_time), 0), coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query NOT LIKE '%pg_stat_statements%'"
            )
        )
        total, calls = spent.one()
        print(
            f"PostgreSQL execution time of every statement (pg_stat_statements): {total:.0f} ms in {calls} calls, "
            f"{total / batches:.3f} ms per batch\n"
        )
        top = await conn.execute(
            text(
                "SELECT calls, total_exec_time, mean_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') "
                "FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' "
                "ORDER BY total_exec_time DESC LIMIT :top"
            ),
            {"top": args.statements},
        )
        print("| calls | server ms | mean ms | rows | statement |\n|---|---|---|---|---|")
        for calls, total, mean, rows, query in top:
            print(f"| {calls} | {total:.0f} | {mean:.3f} | {rows} | `{query[:90]}` |")
    await database.dispose()
    if profile:
        stats = pstats.Stats(profile)
        if args.profile_out:
            stats.dump_stats(args.profile_out)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)


async def _enable_statement_stats(port: int) -> bool:
    """Ask the private server to load pg_stat_statements; True if it needs a restart for that."""
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
    try:
        if "pg_stat_statements" in await conn.fetchval("SHOW shared_preload_libraries"):
            return False
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        return True
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=SERVICES, default="retention")
    parser.add_argument("--interactions", type=int, default=12_000, help="interactions in the stream")
    parser.add_argument("--warm", type=int, default=14_000, help="records applied before measuring")
    parser.add_argument("--batch", type=int, default=150, help="records per consumer batch (transaction)")
    parser.add_argument("--statements", type=int, default=8, help="how many of the costliest statements to list")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the measured span")
    parser.add_argument("--profile-out", help="with --profile: also save the profile here (for pstats or snakeviz)")
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="leave start-up's objects in the garbage collector's view"
    )
    parser.add_argument("--pg-port", type=int, default=PG_PORT, help="port of the private PostgreSQL server")
    args = parser.parse_args(argv)
    port = args.pg_port
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{args.service}"
    pg_ctl("start", args.service, port)
    try:
        if asyncio.run(_enable_statement_stats(port)):
            pg_ctl("restart", args.service, port)
        pg_ctl("reset-dbs", args.service, port)
        upgrade(REPO_ROOT / "services" / args.service / "migrations", url, args.service)
        asyncio.run(measure(args, url))
    finally:
        pg_ctl("stop", args.service, port)


if __name__ == "__main__":
    main()
