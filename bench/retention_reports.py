"""Retention reports over a seeded read model: 100,000 customers and 1,000,000 fact events (SQLite).

    .venv/bin/python -m bench.retention_reports [--customers 100000] [--events 1000000] [--runs 10]

Seeds the retention store (the default SQLite) with a synthetic population: the customer replica,
latest scores and customer facts for every customer, fact events (orders, survey answers, complaints,
contacts) spread over two years, churn facts with suggested reasons for the churned, and alerts. Then
asks each report of /reports/retention/* through the service's own app (in-process ASGI, JSON answer)
for one quarter: one warm-up call, then ``--runs`` timed calls (wall time; p50 and p95), and one more
call under tracemalloc for the peak of Python memory it allocated. ``cpu ms`` is the median process
CPU time per call (both threads: aiosqlite's worker runs the query), which a busy machine inflates
less than wall time. Figures go in
docs/performance/ (a dated report), never in code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from servicekit.auth import current_settings
from servicekit.db import Database
from servicekit.service import API, create_app
from services.retention.main import SPEC
from services.retention.models import Alert, Customer, CustomerScore, metadata
from services.retention.read_model import ChurnFact, CustomerFact, FactEvent
from services.retention.settings import RetentionSettings

T_END = datetime(2026, 10, 1, tzinfo=UTC)
T_START = T_END - timedelta(days=730)
TIERS = ("platinum", "gold", "iron", "lead")
SEGMENTS = ("retail", "smb", "enterprise", "public", "partner")
REASONS = ("product_quality", "poor_service", "staff_turnover", "price", "competitor", "changed_needs", "relocation")
PERIOD = "from=2026-07-01&to=2026-10-01"
REPORTS = [
    f"/reports/retention/owners?{PERIOD}",
    f"/reports/retention/value-lost?{PERIOD}",
    f"/reports/retention/reason-mix?{PERIOD}&group_by=segment",
    f"/reports/retention/complaint-conversion?{PERIOD}",
    f"/reports/retention/satisfaction?{PERIOD}",
    f"/reports/retention/loyalty?{PERIOD}",
    f"/reports/retention/satisfaction-trap?{PERIOD}",
    f"/reports/retention/reason-suggestions/accuracy?{PERIOD}",
    f"/reports/retention/loyalty?{PERIOD}&tier=gold&segment=retail",
]
CHUNK = 20_000


def at(rng: random.Random) -> datetime:
    return T_START + timedelta(seconds=rng.random() * (T_END - T_START).total_seconds())


async def insert_all(database: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with database.transaction() as session:
            await session.execute(insert(table), rows[start : start + CHUNK])


async def seed(database: Database, customers: int, events: int) -> None:
    rng = random.Random(7)
    ids = [f"c{i:06d}" for i in range(customers)]
    churned = set(rng.sample(ids, customers * 15 // 100))
    now = datetime.now(UTC)
    t = time.perf_counter()
    await insert_all(
        database,
        Customer.__table__,  # type: ignore[attr-defined]
        [
            {
                "customer_id": c,
                "owner": f"owner-{rng.randrange(50)}",
                "segment": rng.choice(SEGMENTS),
                "status": "churned" if c in churned else "active",
                "tier": rng.choice(TIERS) if rng.random() < 0.3 else None,
                "version": 1,
                "first_seen": T_START,
                "updated_at": now,
            }
            for c in ids
        ],
    )
    await insert_all(
        database,
        CustomerScore.__table__,  # type: ignore[attr-defined]
        [
            {
                "customer_id": c,
                "churn_risk": rng.random(),
                "clv": rng.gammavariate(2, 200),
                "value_tier": rng.choice(TIERS),
                "as_of": now,
                "updated_at": now,
            }
            for c in ids
        ],
    )
    print(f"  customers and scores: {time.perf_counter() - t:.1f}s", flush=True)
    # The counters the consumer keeps (customer_facts), kept while the events are generated.
    counters: dict[str, dict[str, Any]] = {c: {"orders": 0, "revenue": 0.0} for c in ids}
    kinds = [("order", 0.7), ("survey", 0.15), ("complaint", 0.1), ("price_contact", 0.03), ("incident", 0.02)]
    names, weights = zip(*kinds, strict=True)
    done = 0
    while done < events:
        batch = []
        for n in range(done, min(events, done + CHUNK * 5)):
            kind = rng.choices(names, weights)[0]
            row: dict[str, Any] = {
                "event_id": f"e{n}",
                "customer_id": ids[rng.randrange(customers)],
                "kind": kind,
                "at": at(rng),
                "category": None,
                "dimension": None,
                "score": None,
                "amount": None,
            }
            fact = counters[row["customer_id"]]
            if kind == "order":
                row["amount"] = round(rng.gammavariate(2, 25), 2)
                fact["orders"] += 1
                fact["revenue"] += row["amount"]
                fact["first_order_at"] = min(fact.get("first_order_at") or row["at"], row["at"])
                fact["last_order_at"] = max(fact.get("last_order_at") or row["at"], row["at"])
            elif kind == "survey":
                nps = rng.random() < 0.5
                row["category"] = "nps" if nps else "csat"
                row["score"] = rng.randint(0, 10) if nps else rng.randint(1, 5)
                row["dimension"] = rng.choice(("product", "service", "relationship", None))
                survey = row["category"]
                if fact.get(f"{survey}_at") is None or fact[f"{survey}_at"] < row["at"]:
                    fact[survey], fact[f"{survey}_at"] = row["score"], row["at"]
            elif kind == "complaint":
                row["category"] = rng.choice(("product_quality", "service", "delivery", "billing", "staff", "other"))
            batch.append(row)
        await insert_all(database, FactEvent.__table__, batch)  # type: ignore[attr-defined]
        done += len(batch)
        print(f"  fact events: {done:,}/{events:,}", flush=True)
    await insert_all(
        database,
        CustomerFact.__table__,  # type: ignore[attr-defined]
        [
            {
                "customer_id": c,
                "team": f"team-{rng.randrange(10)}",
                "share_of_wallet": rng.random() if rng.random() < 0.2 else None,
                "orders": counters[c]["orders"],
                "revenue": counters[c]["revenue"],
                "first_order_at": counters[c].get("first_order_at"),
                "last_order_at": counters[c].get("last_order_at"),
                "nps": counters[c].get("nps"),
                "nps_at": counters[c].get("nps_at"),
                "csat": counters[c].get("csat"),
                "csat_at": counters[c].get("csat_at"),
                "updated_at": now,
            }
            for c in ids
        ],
    )
    await insert_all(
        database,
        ChurnFact.__table__,  # type: ignore[attr-defined]
        [
            {
                "event_id": f"s-{c}",
                "customer_id": c,
                "churned_at": at(rng),
                "reason": (reason := rng.choice(REASONS)),
                "side": "customer" if reason in ("competitor", "changed_needs", "relocation") else "company",
                "voluntary": reason != "relocation",
                "tier": rng.choice(TIERS),
                "segment": rng.choice(SEGMENTS),
                "owner": f"owner-{rng.randrange(50)}",
                "team": f"team-{rng.randrange(10)}",
                "historical_value": rng.gammavariate(2, 100),
                "predicted_value": rng.gammavariate(2, 150) if rng.random() < 0.9 else None,
                "suggested_reason": rng.choice((*REASONS[:5], None)),
                "suggestion_confidence": rng.random(),
                "suggestion_votes": {},
                "suggestion_evidence": [],
            }
            for c in sorted(churned)
        ],
    )
    alerts = []
    for n in range(customers // 2):
        first = at(rng)
        acked = rng.random() < 0.7
        outcome = rng.choice(("saved", "churned", "false_alarm", None))
        alerts.append(
            {
                "id": f"a{n}",
                "customer_id": ids[rng.randrange(customers)],
                "reason": "churn_risk",
                "severity": "high",
                "status": "resolved" if outcome else "open",
                "trigger_count": 1,
                "first_triggered_at": first,
                "last_triggered_at": first,
                "owner": f"owner-{rng.randrange(50)}",
                "tier": rng.choice(TIERS),
                "segment": rng.choice(SEGMENTS),
                "control": False,
                "factors": [],
                "event_ids": [],
                "acknowledged_at": first + timedelta(hours=rng.expovariate(1 / 20)) if acked else None,
                "outcome": outcome,
                "created_at": first,
                "updated_at": first,
            }
        )
    await insert_all(database, Alert.__table__, alerts)  # type: ignore[attr-defined]
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    print(f"  seeded in {time.perf_counter() - t:.1f}s", flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))]


async def main(customers: int, events: int, runs: int, keep: Path | None) -> None:
    # The reports are called in-process, as the gateway would but without its signed credential.
    os.environ["CRM_INTERNAL_AUTH"] = "off"
    current_settings.cache_clear()
    with tempfile.TemporaryDirectory() as tmp:
        path = keep or Path(tmp) / "retention.db"
        seeded = path.exists()
        app = create_app(SPEC, RetentionSettings(database_url=f"sqlite+aiosqlite:///{path}"), roles=(API,))
        database: Database = app.state.database
        if seeded:
            print(f"reusing the seeded database {path}", flush=True)
        else:
            async with database.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            print(f"seeding {customers:,} customers and {events:,} fact events ...", flush=True)
            await seed(database, customers, events)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://retention", timeout=120) as client:
            print(f"{'report':<80} {'p50 ms':>8} {'p95 ms':>8} {'cpu ms':>8} {'peak MiB':>9}")
            for path in REPORTS:
                warm = await client.get(path)
                assert warm.status_code == 200, warm.text
                times, cpu = [], []
                for _ in range(runs):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    response = await client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    cpu.append((time.process_time() - start_cpu) * 1000)
                    assert response.status_code == 200, response.text
                tracemalloc.start()
                await client.get(path)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                print(
                    f"{path:<80} {statistics.median(times):8.0f} {percentile(times, 0.95):8.0f} "
                    f"{statistics.median(cpu):8.0f} {peak / 2**20:9.1f}",
                    flush=True,
                )
        await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="seed this SQLite file once and reuse it on later runs")
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.events, args.runs, args.keep))
