"""The customer replicas' handler path on PostgreSQL: statements and CPU per customer event.

    .venv/bin/python -m bench.customer_events [--customers 4000] [--batch 200] [--pg-port 55474]

What an import of N customers sends each consumer of customer data: one customer.created per customer
(with a reference, attributes and, for some, an imported churn) and the score.updated that scoring
publishes for it. The records go through each service's own consumer (`EventConsumer.apply_batch`, with
its before-batch hook, inbox and outbox) in polls of --batch, without Kafka, for the interaction,
scoring and retention services in turn. The interaction service's lookups of the references are
answered in process (an httpx mock of the customer service's POST /customers/lookup and GET
/customers/{id}), and counted. Reported per service: consumer CPU per customer, statements sent per
customer (each one a round trip), by kind, and the lookups asked. PostgreSQL runs privately under
.state/customer-events (--pg-port: another port).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka.structs import ConsumerRecord
from sqlalchemy import event

import bench.consumer_path as path
from contracts.customer import CustomerCreated
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.migrations import upgrade
from servicekit.settings import REPO_ROOT
from services.interaction.replica import handlers as interaction_replica
from services.interaction.replica.directory import CustomerDirectory

SERVICES = ("interaction", "scoring", "retention")
path.STATE_DIR = REPO_ROOT / ".state" / "customer-events"
lookups: Counter[str] = Counter()


def _customer_service(request: httpx.Request) -> httpx.Response:
    """The customer service's answers: every customer exists, version 1, its reference derived from its id."""
    if request.url.path == "/customers/lookup":
        lookups["batch"] += 1
        ids = json.loads(request.content)["ids"]
        return httpx.Response(200, json={"customers": [_customer(i) for i in ids]})
    lookups["single"] += 1
    return httpx.Response(200, json=_customer(request.url.path.rsplit("/", 1)[-1]))


def _customer(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "status": "active", "external_ref": f"ref-{customer_id}", "version": 1}


def records(customers: int, scores: bool = True, churned_every: int = 4) -> list[ConsumerRecord]:
    """Each customer's customer.created, then (as scoring answers it) its score.updated, in the order an import's
    polls mix them: a customer topic's run, then the score topic's."""
    at = datetime.now(UTC) - timedelta(days=1)
    created, scored = [], []
    for i in range(customers):
        customer = f"cust-{i:06d}"
        churned = churned_every > 0 and i % churned_every == 0
        created.append(
            CustomerCreated(
                customer_id=customer, kind="person", status="churned" if churned else "active", external_ref_set=True,
                segment="consumer", attributes={"plan": "basic", "contract": "monthly"}, created_at=at,
                churned_at=(at - timedelta(days=30)).date() if churned else None,
                churn_reason="price" if churned else None,
            )
        )  # fmt: skip
        values = ScoreValues(churn_risk=0.2, health=0.8, value_tier="bronze", lifecycle_stage="active")
        scored.append(
            ScoreUpdated(
                customer_id=customer, previous=None, current=values, model_version="rules", caused_by=customer,
                computed_at=at,
            )
        )  # fmt: skip
    out: list[ConsumerRecord] = []
    for start in range(0, customers, 100):
        out += [path._record(d, len(out) + k) for k, d in enumerate(created[start : start + 100])]
        if scores:
            out += [path._record(d, len(out) + k) for k, d in enumerate(scored[start : start + 100])]
    return out


async def measure(service: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    customers, batch = args.customers, args.batch
    database, consumer = path.service_consumer(service, url)
    stream = records(customers, scores=not args.no_scores, churned_every=args.churned_every)
    profile = cProfile.Profile() if args.profile else None
    sent: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        sent[" ".join(statement.split()[:5])[:60] + (" (many)" if executemany else "")] += 1

    lookups.clear()
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    cpu, wall = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    await path.apply(consumer, stream, batch)
    if profile:
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    await database.engine.dispose()
    return {
        "cpu_ms_per_customer": round(1000 * cpu / customers, 3),
        "customers_per_s_wall": round(customers / wall, 1),
        "statements_per_customer": round(sum(sent.values()) / customers, 3),
        "lookups": dict(lookups),
        "top": {k: round(n / customers, 3) for k, n in sent.most_common(8)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=200, help="records per poll (the consumers' default)")
    parser.add_argument("--service", choices=SERVICES, action="append", help="repeatable; default all three")
    parser.add_argument("--pg-port", type=int, default=55474)
    parser.add_argument("--churned-every", type=int, default=4, help="every Nth customer imported as churned (0: none)")
    parser.add_argument("--no-scores", action="store_true", help="customer.created only, no score.updated")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each service's span")
    args = parser.parse_args(argv)
    directory = CustomerDirectory(
        "http://customer.test", timeout_s=2.0, transport=httpx.MockTransport(_customer_service)
    )
    interaction_replica._directory = lambda: directory  # type: ignore[assignment]  # answered in process
    for service in args.service or SERVICES:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{args.pg_port}/{service}"
        path.pg_ctl("start", service, args.pg_port)
        try:
            path.pg_ctl("reset-dbs", service, args.pg_port)
            upgrade(REPO_ROOT / "services" / service / "migrations", url, service)
            result = asyncio.run(measure(service, url, args))
        finally:
            path.pg_ctl("stop", service, args.pg_port)
        events = "customer.created" if args.no_scores else "customer.created + score.updated"
        print(f"\n{service}: {args.customers} customers ({events}), polls of {args.batch}")
        for key, value in result.items():
            if key == "top":
                for kind, n in value.items():
                    print(f"    {n:8.3f} per customer  {kind}")
            else:
                print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
