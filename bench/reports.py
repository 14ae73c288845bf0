"""Report benchmark: every report over 100,000 customers and 1,000,000 interactions on PostgreSQL.

    .venv/bin/python -m bench.reports [--customers 100000] [--interactions 1000000] [--repeat 20]
    make bench-reports

1. Seeds each reporting service's store (SEEDERS), each with ``customers`` customers:
   - scoring, by SQL: feature rows whose counters add up to ``interactions`` interactions (purchases,
     contacts, complaints, returns, referrals), a current score per customer and one score-history row per
     interaction (each interaction rescored the customer once), dated over two years, with value tiers
     that move every fourth rescoring of a customer, and the tier history derived from them as the
     migration derives it;
   - customer, by SQL: customers who joined over two years (a first ``active`` change), one in seven
     churned later with a reason (every code in turn), a third of those won back;
   - interaction, by SQL: ``interactions`` interactions over two years, one in ten a complaint with its
     workflow steps (acknowledged; valid or rejected; resolved for most);
   - retention, in batches generated in Python: the read model (customer replica, latest scores,
     ``interactions`` fact events with the customer facts counted from them, churn facts, alerts).
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
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench.infra import Infra
from servicekit.auth import internal_headers
from servicekit.db import Database
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT
from servicekit.tables import table_of
from services.retention.alerts.models import Alert
from services.retention.outcomes import read_model
from services.retention.outcomes.models import MetricFact, MetricTotal, MetricTotalsState
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports import facts, loyalty_sweep
from services.retention.reports.models import ChurnFact, CustomerFact, CustomerLoyalty, FactEvent, LoyaltySweep
from services.scoring.reports.service import TIER_HISTORY_FROM_SCORES

# CRM_BENCH_REPORTS_PG_PORT: another port (with its own state directory under .state) so that two benches can run
# at once on one machine without sharing the e2e lock.
_PG_PORT = int(os.environ.get("CRM_BENCH_REPORTS_PG_PORT", "55537"))
INFRA = Infra(
    REPO_ROOT / ".state" / ("bench-reports" if _PG_PORT == 55537 else f"bench-reports-{_PG_PORT}"),
    kafka_port=19792,
    pg_port=_PG_PORT,
    port_offset=24700,
)
P95_TARGET_S = 1.0
PEAK_TARGET_MIB = 100.0

PERIOD = "from=2026-07-01&to=2026-10-01"  # retention's reports: one quarter
METRICS_MONTH = "from=2026-09-01T00:00:00Z&to=2026-10-01T00:00:00Z"
METRICS_PAST_MONTH = "from=2025-09-01T00:00:00Z&to=2025-10-01T00:00:00Z"


def _detail(path: str) -> str:
    """What a retention report's name shows of its query: what follows the period, or all of it without one."""
    query = path.partition("?")[2]
    if query.startswith("from="):
        query = query.split("&", 2)[2] if query.count("&") > 1 else ""
    return f" ({query})" if query else ""


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
    ("customers/churn", "customer", "/reports/customers/churn?from=2026-01-01&to=2026-07-01"),
    (
        "customers/churn (by segment)",
        "customer",
        "/reports/customers/churn?from=2026-01-01&to=2026-07-01&group_by=segment",
    ),
    (
        "customers/churn (by owner, segment s1)",
        "customer",
        "/reports/customers/churn?from=2026-01-01&to=2026-07-01&group_by=owner&segment=s1",
    ),
    ("customers/churn-reasons", "customer", "/reports/customers/churn-reasons?from=2025-07-01&to=2026-07-01"),
    (
        "customers/win-back (by reason)",
        "customer",
        "/reports/customers/win-back?from=2025-07-01&to=2026-07-01&group_by=reason",
    ),
    ("customers/cohorts (24 months)", "customer", "/reports/customers/cohorts?from=2024-10-01&to=2026-10-01&months=24"),
    (
        "customers/churn csv",
        "customer",
        "/reports/customers/churn?from=2026-01-01&to=2026-07-01&group_by=owner&format=csv",
    ),
    ("complaints", "interaction", "/reports/complaints?from=2026-01-01&to=2026-07-01"),
    ("complaints (by category)", "interaction", "/reports/complaints?from=2026-01-01&to=2026-07-01&group_by=category"),
    (
        "complaints (severity high, by channel)",
        "interaction",
        "/reports/complaints?from=2026-01-01&to=2026-07-01&severity=high&group_by=channel",
    ),
    *(
        (
            path.split("?")[0].removeprefix("/reports/") + _detail(path),
            "retention",
            path,
        )
        for path in (
            f"/reports/retention/owners?{PERIOD}",
            f"/reports/retention/value-lost?{PERIOD}",
            f"/reports/retention/reason-mix?{PERIOD}&group_by=segment",
            f"/reports/retention/complaint-conversion?{PERIOD}",
            f"/reports/retention/satisfaction?{PERIOD}",
            f"/reports/retention/loyalty?{PERIOD}",
            f"/reports/retention/satisfaction-trap?{PERIOD}",
            f"/reports/retention/reason-suggestions/accuracy?{PERIOD}",
            f"/reports/retention/loyalty?{PERIOD}&tier=gold&segment=retail",
            f"/reports/retention/task-sla?{PERIOD}",
            f"/reports/retention/task-sla?{PERIOD}&segment=retail&format=csv",
            "/reports/retention/cohorts?from=2024-07-01&to=2026-07-01&months=24",
            "/reports/retention/cohorts?from=2024-07-01&to=2026-07-01&months=24&segment=retail",
            "/reports/retention/loyalty/today",
            "/reports/retention/loyalty/today?tier=gold&segment=retail",
            "/reports/retention/satisfaction-trap/today",
        )
    ),
    # The retention metrics (outcomes) over a month with alerts and churns: the data's latest month and one
    # a year before it, overall and per tier; and the whole two years, per rule.
    ("retention/metrics (latest month)", "retention", f"/retention/metrics?{METRICS_MONTH}"),
    ("retention/metrics (a past month)", "retention", f"/retention/metrics?{METRICS_PAST_MONTH}"),
    (
        "retention/metrics (a past month, by tier)",
        "retention",
        f"/retention/metrics?{METRICS_PAST_MONTH}&group_by=tier",
    ),
    (
        "retention/metrics (two years, by rule)",
        "retention",
        "/retention/metrics?from=2024-10-01T00:00:00Z&to=2026-10-01T00:00:00Z&group_by=rule",
    ),
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
           '{"churn_risk": [{"code": "recency", "label": "No purchase for 40 days", "contribution": 0.2}]}',
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


async def seed_scoring(database: Database, customers: int, interactions: int) -> None:
    params = {
        "customers": customers,
        "interactions": interactions,
        "per": interactions // customers,
        "rounds": max(interactions // customers, 1),
    }
    async with database.engine.begin() as conn:
        await run_sql(conn, SCORING_SQL, params)
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


async def run_sql(conn: Any, statements: list[str], params: dict[str, int]) -> None:
    for statement in statements:
        started = time.perf_counter()
        await conn.execute(text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
        print(f"  {' '.join(statement.split()[:3])[:40]} ({time.perf_counter() - started:.1f}s)", flush=True)


# The customer store: every customer joined (a first ``active`` change) on a day over two years; one in
# seven churned later with a reason (all twelve codes in turn), and a third of those were won back.
CUSTOMER_SQL = [
    "TRUNCATE status_changes, customer_tags, customer_attributes, customers CASCADE",
    """
    CREATE TEMP TABLE bench_life ON COMMIT DROP AS
    SELECT g, 'c' || lpad(g::text, 7, '0') AS id,
           TIMESTAMPTZ '2024-10-01' + (g % 730) * INTERVAL '1 day' + (g % 86400) * INTERVAL '1 second' AS joined,
           CASE WHEN g % 7 = 0 THEN least(DATE '2024-10-01' + (g % 730) + 30 + (g % 400), DATE '2026-11-30') END
               AS churned,
           (ARRAY['product_quality','poor_service','staff_turnover','lack_of_innovation','deliberately_dropped',
                  'price','competitor','changed_needs','bad_faith_departure','relocation','closure','other'])
               [1 + (g / 7) % 12] AS reason
    FROM generate_series(1, :customers) g
    """,
    """
    INSERT INTO customers (id, kind, name, contacts, status, status_changed_at, tags, attributes, version,
                           created_at, updated_at, segment, owner, churned_at, churn_reason)
    SELECT id, 'company', 'Customer ' || g, '[]',
           CASE WHEN g % 21 = 0 THEN 'won_back' WHEN g % 7 = 0 THEN 'churned' ELSE 'active' END,
           joined, '[]', '{}', 1, joined, joined, 's' || (g % 6), 'owner-' || (g % 50), churned,
           CASE WHEN g % 7 = 0 THEN reason END
    FROM bench_life
    """,
    """
    INSERT INTO status_changes (customer_id, previous_status, status, reason, churned_at, version, changed_at)
    SELECT id, previous_status, status, reason, churned_at, version, changed_at FROM (
        SELECT g, 1 AS version, id, NULL AS previous_status, 'active' AS status, NULL AS reason,
               NULL::date AS churned_at, joined AS changed_at
        FROM bench_life
        UNION ALL
        SELECT g, 2, id, 'active', 'churned', reason, churned, churned + INTERVAL '1 day 3 hours'
        FROM bench_life WHERE churned IS NOT NULL
        UNION ALL
        SELECT g, 3, id, 'churned', 'won_back', NULL, NULL, churned + (20 + g % 120) * INTERVAL '1 day'
        FROM bench_life WHERE g % 21 = 0
    ) rows ORDER BY g, version
    """,
    "ANALYZE",
]


async def seed_customer(database: Database, customers: int, interactions: int) -> None:
    async with database.engine.begin() as conn:
        await run_sql(conn, CUSTOMER_SQL, {"customers": customers})
        counts = (
            await conn.execute(text("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM status_changes)"))
        ).one()
    print(f"  customer: {counts[0]:,} customers, {counts[1]:,} status changes")


# The interaction store: ``interactions`` interactions over two years, one in ten a complaint (category,
# severity and channel in turn, due three days after it was opened) with its workflow steps:
# acknowledged, then valid or (one in eight) rejected, then resolved for most valid ones, some late.
INTERACTION_SQL = [
    "TRUNCATE complaint_steps, interactions",
    """
    INSERT INTO interactions (id, customer_id, type, channel, occurred_at, recorded_at, amount, currency,
                              severity, category, complaint_status, due_at)
    SELECT 'i' || i, 'c' || lpad((1 + i % :customers)::text, 7, '0'),
           CASE WHEN i % 10 = 0 THEN 'complaint'
                ELSE (ARRAY['purchase','purchase','purchase','purchase','call','email','chat','visit','return'])
                     [1 + i % 9] END,
           (ARRAY['email','phone','web','store'])[1 + (i / 10) % 4],
           occurred, occurred,
           CASE WHEN i % 10 <> 0 AND i % 9 < 4 THEN 20 + i % 180 END,
           CASE WHEN i % 10 <> 0 AND i % 9 < 4 THEN 'EUR' END,
           CASE WHEN i % 10 = 0 THEN (ARRAY['low','medium','high','critical'])[1 + (i / 10) % 4] END,
           CASE WHEN i % 10 = 0
                THEN (ARRAY['product_quality','service','delivery','billing','staff','other'])[1 + (i / 40) % 6] END,
           CASE WHEN i % 10 = 0 THEN CASE WHEN i % 80 = 0 THEN 'rejected' WHEN i % 7 = 0 THEN 'valid'
                                          ELSE 'resolved' END END,
           CASE WHEN i % 10 = 0 THEN occurred + INTERVAL '3 days' END
    FROM (SELECT i, TIMESTAMPTZ '2024-10-01' + (i * (730.0 / :interactions)) * INTERVAL '1 day' AS occurred
          FROM generate_series(0, :interactions - 1) i) s
    """,
    """
    INSERT INTO complaint_steps (complaint_id, previous_status, status, at)
    SELECT complaint_id, previous_status, status, at FROM (
        SELECT id AS complaint_id, 1 AS n, 'open' AS previous_status, 'acknowledged' AS status,
               occurred_at + INTERVAL '2 hours' AS at
        FROM interactions WHERE type = 'complaint'
        UNION ALL
        SELECT id, 2, 'acknowledged', CASE WHEN complaint_status = 'rejected' THEN 'rejected' ELSE 'valid' END,
               occurred_at + INTERVAL '1 day'
        FROM interactions WHERE type = 'complaint'
        UNION ALL
        SELECT id, 3, 'valid', 'resolved', occurred_at + (1 + length(id) % 5) * INTERVAL '1 day'
        FROM interactions WHERE complaint_status = 'resolved'
    ) steps ORDER BY complaint_id, n
    """,
    "ANALYZE",
]


async def seed_interaction(database: Database, customers: int, interactions: int) -> None:
    async with database.engine.begin() as conn:
        await run_sql(conn, INTERACTION_SQL, {"customers": customers, "interactions": interactions})
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM interactions), "
                    "(SELECT count(*) FROM interactions WHERE type = 'complaint'), "
                    "(SELECT count(*) FROM complaint_steps)"
                )
            )
        ).one()
    print(f"  interaction: {counts[0]:,} interactions, {counts[1]:,} complaints, {counts[2]:,} complaint steps")


# The retention read model: the customer replica, latest scores and customer facts for every customer,
# ``interactions`` fact events (orders, survey answers, complaints, contacts) over two years, churn facts
# with suggested reasons for the churned, and alerts. Rows are generated in Python (the facts the
# consumer keeps are counted from the generated events) and inserted in batches.
T_END = datetime(2026, 10, 1, tzinfo=UTC)
T_START = T_END - timedelta(days=730)
TIERS = ("platinum", "gold", "iron", "lead")
SEGMENTS = ("retail", "smb", "enterprise", "public", "partner")
REASONS = ("product_quality", "poor_service", "staff_turnover", "price", "competitor", "changed_needs", "relocation")
CHUNK = 20_000


def _at(rng: random.Random) -> datetime:
    return T_START + timedelta(seconds=rng.random() * (T_END - T_START).total_seconds())


async def insert_all(database: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with database.transaction() as session:
            await session.execute(insert(table), rows[start : start + CHUNK])


async def seed_retention_rows(database: Database, customers: int, events: int) -> None:
    rng = random.Random(7)
    ids = [f"c{i:06d}" for i in range(customers)]
    churned = set(rng.sample(ids, customers * 15 // 100))
    now = datetime.now(UTC)
    t = time.perf_counter()
    await insert_all(
        database,
        table_of(Customer),
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
        table_of(CustomerScore),
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
                "at": _at(rng),
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
        await insert_all(database, table_of(FactEvent), batch)
        done += len(batch)
        print(f"  fact events: {done:,}/{events:,}", flush=True)
    await insert_all(
        database,
        table_of(CustomerFact),
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
        table_of(ChurnFact),
        [
            {
                "event_id": f"s-{c}",
                "customer_id": c,
                "churned_at": _at(rng),
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
    alerts: list[dict[str, Any]] = []
    for n in range(customers // 2):
        first = _at(rng)
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
    await insert_all(database, table_of(Alert), alerts)
    await seed_tasks(database, customers)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    print(f"  seeded in {time.perf_counter() - t:.1f}s", flush=True)


TASKS_SQL = """
INSERT INTO tasks (id, alert_id, customer_id, reason, action, owner, status, due_at, completed_at, created_at, note)
SELECT 't' || g, NULL, 'c' || lpad((g % :customers)::text, 6, '0'), 'churn_risk', 'call',
       CASE WHEN g % 20 = 0 THEN NULL ELSE 'owner-' || (g % 50) END,
       CASE WHEN g % 10 < 7 THEN 'completed' WHEN g % 10 < 9 THEN 'open' ELSE 'cancelled' END,
       created + INTERVAL '3 days',
       CASE WHEN g % 10 < 7 THEN created + (g % 120) * INTERVAL '1 hour' END,
       created, NULL
FROM (SELECT g, TIMESTAMPTZ '2024-10-01' + (g % 730) * INTERVAL '1 day' AS created
      FROM generate_series(1, :tasks) g) s
"""


async def seed_tasks(database: Database, customers: int) -> None:
    """One task per two customers over two years: 70% completed (within 0 to 5 days of a 3-day due time),
    20% open, 10% cancelled; one in twenty unassigned."""
    async with database.engine.begin() as conn:
        await conn.execute(text("DELETE FROM tasks"))
        await conn.execute(text(TASKS_SQL), {"customers": customers, "tasks": customers // 2})


async def seed_retention(database: Database, customers: int, interactions: int) -> None:
    async with database.engine.begin() as conn:
        for table in (
            "alerts",
            "churn_facts",
            "status_changes",
            "customer_facts",
            "fact_events",
            "customer_scores",
            "customers",
            "customer_loyalty",
            "loyalty_sweeps",
        ):
            await conn.execute(text(f"DELETE FROM {table}"))
    await seed_retention_rows(database, customers, interactions)


STATUS_HISTORY_SQL = """
INSERT INTO status_changes (event_id, customer_id, previous_status, status, reason, at)
SELECT 'active-' || customer_id, customer_id, NULL, 'active', NULL, :start FROM customers
UNION ALL
SELECT 'churn-' || customer_id, customer_id, 'active', 'churned', reason, churned_at FROM churn_facts
"""


async def build_metrics_read_model(database: Database) -> None:
    """The metrics' read model, as the migration backfills it, for a store seeded by SQL after its tables were
    made (without it /retention/metrics answers from the facts: the exact path, not the one users get)."""
    async with database.engine.begin() as conn:
        for model in (MetricFact, MetricTotal, MetricTotalsState):
            await conn.run_sync(table_of(model).create, checkfirst=True)
    async with database.transaction() as session:
        if await session.run_sync(lambda s: read_model.lookback_of(s.connection())) is None:
            t = time.perf_counter()
            await session.run_sync(lambda s: read_model.rebuild(s.connection()))
            print(f"  metrics' read model built in {time.perf_counter() - t:.1f}s", flush=True)


async def prepare_retention(database: Database) -> None:
    """The read models kept for the reports' speed, as a deployment has them: the purchase months filled
    from the orders (as the migration fills them, when none is set) and today's loyalty sweep (redone)."""
    async with database.engine.begin() as conn:  # a store seeded before they existed gains them
        for table in (CustomerLoyalty, LoyaltySweep):
            await conn.run_sync(table_of(table).create, checkfirst=True)
    async with database.transaction() as session:
        # A store seeded before the column existed gains it as the migration adds it.
        await session.execute(
            text("ALTER TABLE customer_facts ADD COLUMN IF NOT EXISTS order_months BIGINT NOT NULL DEFAULT 0")
        )
        await session.execute(text("ALTER TABLE customer_facts ADD COLUMN IF NOT EXISTS first_order_month INTEGER"))
        if (await session.execute(text("SELECT max(first_order_month) FROM customer_facts"))).scalar_one() is None:
            t = time.perf_counter()
            await facts.backfill_order_months(session)
            print(f"  purchase months backfilled in {time.perf_counter() - t:.1f}s", flush=True)
        # The status history the retention metrics read: each customer became one at the start of the data,
        # and each churn fact is a change to churned on its day (a store seeded before they were gains them).
        if (await session.execute(text("SELECT count(*) FROM status_changes"))).scalar_one() == 0:
            await session.execute(text(STATUS_HISTORY_SQL), {"start": T_START})
    await build_metrics_read_model(database)
    settings = importlib.import_module("services.retention.main").SPEC.settings_cls()
    day = datetime.now(UTC).date()
    async with database.transaction() as session:
        await session.execute(text("DELETE FROM loyalty_sweeps"))
    t = time.perf_counter()
    async with database.transaction() as session:
        typed = await loyalty_sweep.sweep(session, day=day, thresholds=settings.loyalty_thresholds())
    print(f"  loyalty sweep: {typed:,} customers typed in {time.perf_counter() - t:.1f}s", flush=True)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE customer_facts")
        await conn.exec_driver_sql("ANALYZE customer_loyalty")


async def prepare_scoring(database: Database) -> None:
    """A store seeded before the owner and consent columns gains them as the 2026-12-07 migration adds them."""
    async with database.transaction() as session:
        for ddl in (
            "ADD COLUMN IF NOT EXISTS owner VARCHAR(100)",
            "ADD COLUMN IF NOT EXISTS consent JSON NOT NULL DEFAULT '{}'",
            "ADD COLUMN IF NOT EXISTS consent_version INTEGER NOT NULL DEFAULT 0",
        ):
            await session.execute(text(f"ALTER TABLE customer_features {ddl}"))


async def prepare_interaction(database: Database) -> None:
    """A store seeded before the complaints' partial index gains it as the 2026-12-07 migration adds it."""
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_interactions_complaints_opened ON interactions (occurred_at) "
            "WHERE type = 'complaint'"
        )
        await conn.exec_driver_sql("ANALYZE interactions")


PREPARERS: dict[str, Callable[[Database], Awaitable[None]]] = {
    "retention": prepare_retention,
    "scoring": prepare_scoring,
    "interaction": prepare_interaction,
}

SEEDERS: dict[str, Callable[[Database, int, int], Awaitable[None]]] = {
    "scoring": seed_scoring,
    "customer": seed_customer,
    "interaction": seed_interaction,
    "retention": seed_retention,
}


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
        database = app.state.database
        if not args.no_seed:  # the databases were recreated empty: create the tables, then fill them
            async with database.engine.begin() as conn:
                await conn.run_sync(importlib.import_module(f"services.{service}.main").SPEC.metadata.create_all)
            print(f"seeding {service} ({args.customers:,} customers, {args.interactions:,} interactions) ...")
            await SEEDERS[service](database, args.customers, args.interactions)
        if service in PREPARERS:
            print(f"preparing {service}'s read models ...")
            await PREPARERS[service](database)
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
            if args.only and not any(part in name for part in args.only):
                continue
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
    parser.add_argument("--only", action="append", default=[], help="measure only reports whose name contains this")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    with INFRA.postgres(fresh=not args.no_seed, keep=args.keep):
        code = asyncio.run(run(args))
    sys.exit(code)


if __name__ == "__main__":
    main()
