"""Report benchmark: every report over 100,000 customers and 1,000,000 interactions on PostgreSQL.

    .venv/bin/python -m bench.reports [--customers 100000] [--interactions 1000000] [--repeat 20]
    make bench-reports

1. Seeds each service's store directly by SQL (SEEDERS): scoring gets ``customers`` feature rows whose
   counters add up to ``interactions`` interactions (purchases, contacts, complaints, returns,
   referrals), a current score per customer and one score-history row per interaction (each interaction
   rescored the customer once), dated over two years, with value tiers that move every fourth
   rescoring of a customer, and the tier history derived from them as the migration derives it.
2. Calls each report in REPORTS in process, through the service's own ASGI app (routing, validation,
   the queries and the JSON encoding; no network), ``--warmup`` times then ``--repeat`` times, and prints
   p50 / p95 wall time. Then once more under tracemalloc for the peak of Python memory the call
   allocated, and the process's peak RSS growth over the whole run.

PostgreSQL is the project-owned cluster of deploy/postgres.sh on its own port and state directory.
The targets: p95 under 1 s and peak under 100 MiB per report.

Adding a report: seed its service's tables in a function added to SEEDERS (if not seeded yet) and add
(name, service, path) to REPORTS; the service's app is built from its SPEC.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.infra import Infra
from servicekit.auth import internal_headers
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT
from services.scoring.value_reports import TIER_HISTORY_FROM_SCORES

INFRA = Infra(REPO_ROOT / ".state" / "bench-reports", kafka_port=19792, pg_port=55537, port_offset=24700)
P95_TARGET_S = 1.0
PEAK_TARGET_MIB = 100.0

# (name, service, path): each is called as GET on the service's app.
REPORTS: list[tuple[str, str, str]] = [
    ("value/pyramid (clv)", "scoring", "/reports/value/pyramid?basis=clv"),
    ("value/pyramid (contribution)", "scoring", "/reports/value/pyramid?basis=contribution"),
    ("value/concentration (clv)", "scoring", "/reports/value/concentration?basis=clv&points=20"),
    ("value/concentration (contribution)", "scoring", "/reports/value/concentration?basis=contribution&points=20"),
    ("value/tier-migration", "scoring", "/reports/value/tier-migration?from=2025-06-01&to=2026-06-01"),
    ("value/rfm", "scoring", "/reports/value/rfm"),
    ("value/summary", "scoring", "/reports/value/summary"),
    ("value/summary (segment)", "scoring", "/reports/value/summary?segment=s3"),
    ("value/pyramid csv", "scoring", "/reports/value/pyramid?basis=contribution&format=csv"),
    ("customer value (one customer)", "scoring", "/customers/c0004242/value"),
    ("segment count (rfm + tier)", "scoring", "/segments/{segment}/count"),
    ("segment page (rfm + tier)", "scoring", "/segments/{segment}/customers?limit=200"),
]


# ---- seeding -------------------------------------------------------------------------------------------

SCORING_SQL = [
    "TRUNCATE customer_features, current_scores, scores, tier_changes, segments",
    # Counters of ~interactions/customers events per customer: 40% purchases, 45% contacts, 8%
    # complaints, 5% returns, 2% referrals; a tenth has a wallet estimate.
    """
    INSERT INTO customer_features (
        customer_id, status, segment, attributes, customer_version, purchases, total_spend,
        first_purchase_at, last_purchase_at, recent_purchases, purchase_days, returns, complaints_total,
        recent_complaints, open_complaint_ids, overdue_complaint_ids, closed_complaint_ids, open_complaints,
        overdue_complaints, nps_count, nps_sum, csat_count, csat_sum, sentiment_count, seen_ids, erased,
        updated_at, contacts, referrals, referral_amount, referrals_with_amount, wallet_estimate,
        first_seen_at, last_event_at)
    SELECT 'c' || lpad(g::text, 7, '0'),
           CASE WHEN g % 9 = 0 THEN 'churned' ELSE 'active' END,
           's' || (g % 6),
           '{}', 1, p, p * (20 + (g * 37 % 180)),
           TIMESTAMPTZ '2024-07-01' + (g % 300) * INTERVAL '1 day',
           TIMESTAMPTZ '2026-06-30' - (g * 7 % 700) * INTERVAL '1 day',
           '[]', '{}', r, k, '[]', '{}', '[]', '[]', 0, 0, 0, 0, 0, 0, 0, '[]', false,
           now(), e - p - r - k - ref, ref, 0, 0,
           CASE WHEN g % 10 = 0 THEN p * 300.0 ELSE NULL END,
           TIMESTAMPTZ '2024-07-01', TIMESTAMPTZ '2026-06-30'
    FROM (SELECT g, e, greatest((e * 40) / 100, 1) AS p, (e * 5) / 100 AS r, (e * 8) / 100 AS k,
                 (e * 2) / 100 AS ref
          FROM (SELECT g, :per + (g % 7) - 3 AS e FROM generate_series(1, :customers) g) base) s
    """,
    # One score row per interaction, dated evenly over two years; the tier drifts over time.
    """
    INSERT INTO scores (customer_id, churn_risk, health, factors, model_version, value_tier, lifecycle_stage,
                        p_alive, expected_purchases, clv, value_at_risk, value_model_version, caused_by,
                        caused_by_type, as_of, snapshot, computed_at)
    SELECT 'c' || lpad((1 + (i % :customers))::text, 7, '0'),
           (i % 100) / 100.0, 50 + (i % 50),
           '{"churn_risk": [{"code": "recency", "label": "No purchase for 40 days", "weight": 0.2}]}',
           'rules-v1',
           (ARRAY['platinum','gold','gold','iron','iron','iron','lead','lead','lead','lead'])
               [1 + ((i / :customers) / 4 + (i % :customers) * 7) % 10],
           'formation', 0.8, 2.0, 100 + (i % 997), (i % 100) / 100.0 * (100 + (i % 997)), 'vm-1',
           'e' || i, 'interaction.recorded',
           TIMESTAMPTZ '2024-07-01' + ((i / :customers) * (730.0 / :rounds)) * INTERVAL '1 day',
           '{"purchases": 4, "total_spend": 410.5, "days_since_last_purchase": 33.2, "complaints_90d": 1,
             "avg_nps": 7.5, "sentiment": 0.12, "returns": 0, "open_complaints": 0, "tenure_days": 412}',
           now()
    FROM generate_series(0, :interactions - 1) i
    """,
    """
    INSERT INTO current_scores (customer_id, churn_risk, health, factors, model_version, value_tier,
                                lifecycle_stage, p_alive, expected_purchases, clv, value_at_risk,
                                value_model_version, score_id, caused_by, caused_by_type, as_of, computed_at)
    SELECT DISTINCT ON (customer_id) customer_id, churn_risk, health, factors, model_version, value_tier,
           lifecycle_stage, p_alive, expected_purchases, clv, value_at_risk, value_model_version, id, caused_by,
           caused_by_type, as_of, computed_at
    FROM scores ORDER BY customer_id, id DESC
    """,
    TIER_HISTORY_FROM_SCORES,
    "ANALYZE",
]
SEGMENT = (
    "INSERT INTO segments (id, name, conditions, created_at) VALUES ('bench', 'bench', "
    """'[{"field": "rfm_segment", "op": "in", "value": ["at_risk", "cant_lose"]},
        {"field": "value_tier", "op": "in", "value": ["platinum", "gold"]}]', now())"""
)


async def seed_scoring(engine: AsyncEngine, customers: int, interactions: int) -> None:
    params = {
        "customers": customers,
        "interactions": interactions,
        "per": interactions // customers,
        "rounds": max(interactions // customers, 1),
    }
    async with engine.begin() as conn:
        for statement in SCORING_SQL:
            started = time.perf_counter()
            await conn.execute(text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
            print(f"  {' '.join(statement.split()[:3])[:40]} ({time.perf_counter() - started:.1f}s)")
        await conn.execute(text(SEGMENT))
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM customer_features), (SELECT count(*) FROM scores), "
                    "(SELECT sum(purchases + contacts + complaints_total + returns + referrals) FROM customer_features)"
                )
            )
        ).one()
    print(f"  scoring: {counts[0]:,} customers, {counts[1]:,} score rows, {counts[2]:,} interactions in the counters")


SEEDERS: dict[str, Callable[[AsyncEngine, int, int], Awaitable[None]]] = {"scoring": seed_scoring}


# ---- measuring -----------------------------------------------------------------------------------------


async def get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET signed with the internal credential, as the gateway calls a service."""
    bare, _, query = path.partition("?")
    return await client.get(
        path, headers=internal_headers("GET", bare, query=query, principal="role=analyst&sub=bench")
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(client: httpx.AsyncClient, path: str, warmup: int, repeat: int) -> dict[str, float]:
    for _ in range(warmup):
        response = await get(client, path)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:500]}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await get(client, path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
    tracemalloc.start()
    tracemalloc.reset_peak()
    response = await get(client, path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "p50": statistics.median(times),
        "p95": percentile(times, 0.95),
        "max": max(times),
        "peak_mib": peak / 2**20,
        "bytes": len(response.content),
    }


def app_for(service: str, url: str) -> Any:
    spec = importlib.import_module(f"services.{service}.main").SPEC
    settings = spec.settings_cls(database_url=url)
    return create_app(spec, settings, roles=(API,))


async def run(args: argparse.Namespace) -> int:
    services = sorted({service for _, service, _ in REPORTS})
    apps = {s: app_for(s, INFRA.database_url(s)) for s in services}
    for service, app in apps.items():
        engine = app.state.database.engine
        async with engine.begin() as conn:
            await conn.run_sync(importlib.import_module(f"services.{service}.models").metadata.create_all)
        if not args.no_seed:
            print(f"seeding {service} ({args.customers:,} customers, {args.interactions:,} interactions) ...")
            await SEEDERS[service](engine, args.customers, args.interactions)
    load = os.getloadavg()
    print(f"measuring on {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = []
    failed = False
    clients = {
        s: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{s}", timeout=60)
        for s, app in apps.items()
    }
    try:
        for name, service, path in REPORTS:
            path = path.replace("{segment}", "bench")
            result = await measure(clients[service], path, args.warmup, args.repeat)
            ok = result["p95"] < P95_TARGET_S and result["peak_mib"] < PEAK_TARGET_MIB
            failed |= not ok
            rows.append((name, result, ok))
            print(
                f"  {name:<38} p50 {result['p50'] * 1000:7.1f} ms  p95 {result['p95'] * 1000:7.1f} ms  "
                f"peak {result['peak_mib']:6.2f} MiB  {result['bytes']:>7} B  {'ok' if ok else 'OVER TARGET'}",
                flush=True,
            )
    finally:
        for client in clients.values():
            await client.aclose()
        for app in apps.values():
            await app.state.database.dispose()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(f"\nprocess peak RSS grew {rss_after - rss_before:.1f} MiB over all reports (to {rss_after:.0f} MiB)")
    print("\n| report | p50 ms | p95 ms | peak MiB (tracemalloc) |\n|---|---:|---:|---:|")
    for name, r, _ in rows:
        print(f"| {name} | {r['p50'] * 1000:.1f} | {r['p95'] * 1000:.1f} | {r['peak_mib']:.2f} |")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-seed", action="store_true", help="reuse the data of the previous run")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    INFRA.pg_ctl("start")
    if not args.no_seed:
        INFRA.pg_ctl("reset-dbs")
    try:
        code = asyncio.run(run(args))
    finally:
        if not args.keep:
            INFRA.pg_ctl("stop")
    sys.exit(code)


if __name__ == "__main__":
    main()
