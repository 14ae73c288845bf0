"""Console speed benchmark: every API call the console's pages make, over 100,000 customers and 10,000 open
alerts on PostgreSQL, paged on the server.

    .venv/bin/python -m bench.console [--customers 100000] [--open-alerts 10000] [--interactions 300000]
    make bench-console

1. Seeds each service's store directly, as bench/reports.py does (its SQL seeders for scoring, customer and
   interaction: current scores and score history, customers with owners, interactions with one in ten a
   complaint in its workflow), and the retention store here: the customer replica and latest scores,
   ``--open-alerts`` open or acknowledged alerts with one open task each, and twice as many resolved alerts
   over the last six months (so the monthly metrics have outcomes to count). Owners are ``owner-0`` ..
   ``owner-49`` everywhere, so an agent's page holds a fiftieth of the rows.
2. Calls each of CALLS in process, through the service's own ASGI app (routing, validation, the queries and
   the JSON encoding; no network and no gateway hop), ``--warmup`` times then ``--repeat`` times, and prints
   p50 / p95 wall time per call. The gateway's own cost per request is measured by bench/gateway_overhead.py.

The target: every call's p95 under 1 s, so each page shows its first data within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from bench.infra import Infra
from bench.reports import (
    app_for,
    build_metrics_read_model,
    insert_all,
    percentile,
    seed_customer,
    seed_interaction,
    seed_scoring,
)
from servicekit.auth import internal_headers
from servicekit.db import Database
from servicekit.settings import REPO_ROOT
from services.retention.alerts.models import Alert
from services.retention.replica.models import Customer, CustomerScore
from services.retention.tasks.models import Task

INFRA = Infra(REPO_ROOT / ".state" / "bench-console", kafka_port=19992, pg_port=55547, port_offset=24900)
P95_TARGET_S = 1.0
TIERS = ("platinum", "gold", "iron", "lead")
SEGMENTS = tuple(f"s{n}" for n in range(6))
OWNERS = 50
OPEN = "status=open&status=acknowledged&status=valid&status=resolved&status=followed_up"


def _month(back: int) -> str:
    """The query of the calendar month ``back`` months before this one, as the rates page asks it."""
    now = datetime.now(UTC)
    year, month = divmod(now.year * 12 + now.month - 1 - back, 12)
    start = datetime(year, month + 1, 1, tzinfo=UTC)
    year, month = divmod(year * 12 + month + 1, 12)
    end = min(datetime(year, month + 1, 1, tzinfo=UTC), now)
    return f"from={start.isoformat().replace('+00:00', 'Z')}&to={end.isoformat().replace('+00:00', 'Z')}"


def calls(open_alerts: int) -> list[tuple[str, str, str, str]]:
    """(page, call, service, path): every list and figure the console's pages read, on their first page and,
    for the longest lists, on their last."""
    last = max(0, (open_alerts // 20 - 1) * 20)
    return [
        ("queue", "open alerts, first page (admin)", "retention", "/alerts?status=open&status=acknowledged&limit=20"),
        (
            "queue",
            "open alerts, last page (admin)",
            "retention",
            f"/alerts?status=open&status=acknowledged&limit=20&offset={last}",
        ),
        (
            "queue",
            "an agent's open alerts",
            "retention",
            "/alerts?status=open&status=acknowledged&limit=20&owner=owner-7",
        ),
        ("queue", "open tasks, first page (admin)", "retention", "/tasks?status=open&limit=20"),
        ("queue", "an agent's open tasks", "retention", "/tasks?status=open&limit=20&owner=owner-7"),
        ("complaints", "open complaints, first page", "interaction", f"/complaints?{OPEN}&limit=20"),
        ("complaints", "open complaints, overdue", "interaction", f"/complaints?{OPEN}&overdue=true&limit=20"),
        ("complaints", "one customer's complaints", "interaction", f"/complaints?{OPEN}&customer_id=c0000011&limit=20"),
        ("customer 360", "profile", "customer", "/customers/c0004242"),
        ("customer 360", "score history", "scoring", "/customers/c0004242/scores/history?limit=100"),
        ("customer 360", "timeline, first page", "interaction", "/customers/c0004242/interactions?limit=20"),
        ("manager", "pyramid, risk and stages", "scoring", "/scores/summary"),
        ("manager", "pyramid, risk and stages (segment)", "scoring", "/scores/summary?segment=s3"),
        ("retention rates", "metrics, current month", "retention", f"/retention/metrics?{_month(0)}"),
        ("retention rates", "metrics, a past month", "retention", f"/retention/metrics?{_month(2)}"),
        ("rules", "rules, first page", "retention", "/rules?limit=20"),
        ("analyst", "churn models", "scoring", "/models?kind=churn&limit=50"),
        ("analyst", "value models", "scoring", "/models?kind=value&limit=20"),
        ("admin", "webhooks, first page", "retention", "/webhooks?limit=20"),
    ]


async def seed_retention(database: Database, customers: int, open_alerts: int) -> None:
    rng = random.Random(11)
    now = datetime.now(UTC)
    started = time.perf_counter()
    async with database.engine.begin() as conn:
        # Emptying the read model's state makes build_metrics_read_model build it again from the new rows.
        for table in ("tasks", "alerts", "customer_scores", "customers", "metric_totals_state"):
            await conn.execute(text(f"DELETE FROM {table}"))
    ids = [f"c{g:07d}" for g in range(1, customers + 1)]
    owner = {c: f"owner-{g % OWNERS}" for g, c in enumerate(ids, start=1)}  # as the customer seed assigns them
    await insert_all(
        database,
        Customer.__table__,  # type: ignore[attr-defined]
        [
            {
                "customer_id": c,
                "owner": owner[c],
                "segment": rng.choice(SEGMENTS),
                "status": "active",
                "tier": None,
                "version": 1,
                "first_seen": now - timedelta(days=700),
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
    alerts: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    for n in range(open_alerts * 3):
        customer = ids[rng.randrange(customers)]
        first = now - timedelta(seconds=rng.random() * 180 * 86400)
        is_open = n < open_alerts
        outcome = None if is_open else rng.choice(("saved", "churned", "false_alarm"))
        risk = rng.random()
        clv = rng.gammavariate(2, 200)
        alert = {
            "id": f"a{n:07d}",
            "customer_id": customer,
            "reason": rng.choice(("churn_risk", "severe_complaint", "risk_jump")),
            "severity": rng.choice(("medium", "high", "critical")),
            "status": ("acknowledged" if n % 3 == 0 else "open") if is_open else "resolved",
            "trigger_count": 1,
            "first_triggered_at": first,
            "last_triggered_at": first,
            "churn_risk": risk,
            "value_at_risk": risk * clv,
            "owner": owner[customer],
            "tier": rng.choice(TIERS),
            "segment": rng.choice(SEGMENTS),
            "control": n % 10 == 0,
            "factors": [{"code": "recency", "label": "No purchase for 40 days", "contribution": 0.2}],
            "event_ids": [],
            "acknowledged_at": first + timedelta(hours=2) if n % 3 == 0 or not is_open else None,
            "outcome": outcome,
            "resolved_at": None if is_open else first + timedelta(days=rng.randint(1, 20)),
            "open_slot": f"{customer}:{n}" if is_open else None,
            "created_at": first,
            "updated_at": first,
        }
        alerts.append(alert)
        if is_open and not alert["control"]:
            tasks.append(
                {
                    "id": f"t{n:07d}",
                    "alert_id": alert["id"],
                    "customer_id": customer,
                    "reason": alert["reason"],
                    "action": "call_owner",
                    "owner": owner[customer],
                    "status": "open",
                    "due_at": first + timedelta(days=3),
                    "created_at": first,
                }
            )
    await insert_all(database, Alert.__table__, alerts)  # type: ignore[attr-defined]
    await insert_all(database, Task.__table__, tasks)  # type: ignore[attr-defined]
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM customers), "
                    "(SELECT count(*) FROM alerts WHERE status IN ('open', 'acknowledged')), "
                    "(SELECT count(*) FROM tasks WHERE status = 'open')"
                )
            )
        ).one()
    print(
        f"  retention: {counts[0]:,} customers, {counts[1]:,} open alerts, {counts[2]:,} open tasks "
        f"({time.perf_counter() - started:.1f}s)",
        flush=True,
    )
    await build_metrics_read_model(database)


async def get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    bare, _, query = path.partition("?")
    headers = internal_headers("GET", bare, query=query, principal="role=admin&sub=bench")
    return await client.get(path, headers=headers)


async def measure(client: httpx.AsyncClient, path: str, warmup: int, repeat: int) -> dict[str, float]:
    for _ in range(warmup):
        response = await get(client, path)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:500]}")
    times = []
    total = None
    for _ in range(repeat):
        started = time.perf_counter()
        response = await get(client, path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        total = body.get("total") if isinstance(body, dict) else None
    return {
        "p50": statistics.median(times),
        "p95": percentile(times, 0.95),
        "bytes": len(response.content),
        "total": total if total is not None else -1,
    }


async def run(args: argparse.Namespace) -> int:
    plan = [c for c in calls(args.open_alerts) if not args.only or c[0] in args.only]
    services = sorted({service for _, _, service, _ in plan})
    apps = {s: app_for(s, INFRA.database_url(s)) for s in services}
    for service, app in apps.items():
        database = app.state.database
        if args.no_seed:
            continue
        async with database.engine.begin() as conn:
            await conn.run_sync(importlib.import_module(f"services.{service}.models").metadata.create_all)
        print(f"seeding {service} ({args.customers:,} customers) ...", flush=True)
        if service == "retention":
            await seed_retention(database, args.customers, args.open_alerts)
        elif service == "scoring":
            await seed_scoring(database, args.customers, args.interactions)
        elif service == "customer":
            await seed_customer(database, args.customers, args.interactions)
        else:
            await seed_interaction(database, args.customers, args.interactions)
    load = os.getloadavg()
    print(f"measuring on {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    clients = {
        s: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{s}", timeout=60)
        for s, app in apps.items()
    }
    rows = []
    failed = False
    try:
        for page, name, service, path in plan:
            result = await measure(clients[service], path, args.warmup, args.repeat)
            ok = result["p95"] < P95_TARGET_S
            failed |= not ok
            rows.append((page, name, path, result))
            shown = f"{int(result['total']):>7,}" if result["total"] >= 0 else "      -"
            print(
                f"  {page:<15} {name:<36} p50 {result['p50'] * 1000:7.1f} ms  p95 {result['p95'] * 1000:7.1f} ms  "
                f"total {shown}  {result['bytes']:>7} B  {'ok' if ok else 'OVER TARGET'}",
                flush=True,
            )
    finally:
        for client in clients.values():
            await client.aclose()
        for app in apps.values():
            await app.state.database.dispose()
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print("\n| page | call | p50 ms | p95 ms | rows in the list |\n|---|---|---:|---:|---:|")
    for page, name, _, r in rows:
        total = f"{int(r['total']):,}" if r["total"] >= 0 else "-"
        print(f"| {page} | {name} | {r['p50'] * 1000:.1f} | {r['p95'] * 1000:.1f} | {total} |")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--open-alerts", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=300_000)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-seed", action="store_true", help="reuse the data of the previous run")
    parser.add_argument("--only", action="append", help="measure only this page's calls (repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    with INFRA.postgres(fresh=not args.no_seed, keep=args.keep):
        code = asyncio.run(run(args))
    sys.exit(code)


if __name__ == "__main__":
    main()
