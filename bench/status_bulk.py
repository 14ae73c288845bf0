"""Bulk status change benchmark: POST /customers/status/bulk on PostgreSQL, in process.

    .venv/bin/python -m bench.status_bulk [--rows 2000] [--requests 3]
    make bench-status-bulk

For each of ``--requests`` rounds it creates ``--rows`` customers with POST /customers/bulk, then marks them
all churned (every reason code in turn, churn dates over two years) in ONE POST /customers/status/bulk, and
then sends the same request again (every row ``unchanged``). It prints each request's wall time and rows/s,
and checks what the store holds: one status-history row and one customer.status_changed outbox event per
changed row, none for the resend.

The customer service's own ASGI app (routing, validation, the queries, the JSON encoding; no gateway, no
network), signed as the gateway signs. PostgreSQL is the project-owned cluster of deploy/postgres.sh on its
own port and state directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from bench.infra import Infra
from servicekit.auth import internal_headers
from servicekit.service import API, create_app
from servicekit.settings import REPO_ROOT
from services.customer.main import SPEC, metadata
from services.customer.status.lifecycle import ChurnReason

INFRA = Infra(REPO_ROOT / ".state" / "bench-status", kafka_port=19992, pg_port=55547, port_offset=24900)
PRINCIPAL = "role=importer&sub=bench"


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    payload = orjson.dumps(body)
    headers = {"content-type": "application/json", **internal_headers("POST", path, body=payload, principal=PRINCIPAL)}
    return await client.post(path, content=payload, headers=headers)


def status_rows(ids: list[str]) -> list[dict[str, Any]]:
    reasons = list(ChurnReason)
    start = date(2024, 7, 1)
    return [
        {
            "customer_id": cid,
            "status": "churned",
            "reason": reasons[i % len(reasons)].value,
            "churned_at": (start + timedelta(days=i % 700)).isoformat(),
            "note": "imported",
        }
        for i, cid in enumerate(ids)
    ]


async def count(client_db: Any, sql: str) -> int:
    async with client_db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def run(args: argparse.Namespace) -> int:
    app = create_app(SPEC, SPEC.settings_cls(database_url=INFRA.database_url("customer")), roles=(API,))
    database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    load = os.getloadavg()
    print(f"on {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}", flush=True)
    firsts: list[float] = []
    resends: list[float] = []
    failed = False
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://customer", timeout=900) as client,
    ):
        for round_no in range(args.requests):
            customers = [
                {"name": f"Bench {round_no}-{i}", "kind": "person", "external_ref": f"B{round_no}-{i}"}
                for i in range(args.rows)
            ]
            created = await post(client, "/customers/bulk", {"rows": customers})
            assert created.status_code == 200, created.text[:500]
            ids = [r["id"] for r in created.json()["rows"]]
            body = {"rows": status_rows(ids)}
            for label, times, expected in (("first", firsts, "changed"), ("resend", resends, "unchanged")):
                started = time.perf_counter()
                response = await post(client, "/customers/status/bulk", body)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text[:500]
                report = response.json()
                ok = report[expected] == args.rows
                failed |= not ok
                times.append(elapsed)
                print(
                    f"  round {round_no + 1} {label:<6} {args.rows} rows in {elapsed:7.2f} s "
                    f"({args.rows / elapsed:8.0f} rows/s)  {expected} {report[expected]}"
                    f"{'' if ok else '  UNEXPECTED REPORT'}",
                    flush=True,
                )
        churned = await count(database, "SELECT count(*) FROM customers WHERE status = 'churned'")
        history = await count(database, "SELECT count(*) FROM status_changes WHERE status = 'churned'")
        events = await count(
            database, "SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8') LIKE '%customer.status_changed%'"
        )
    await database.dispose()
    want = args.rows * args.requests
    print(f"store: {churned} churned customers, {history} churned history rows, {events} status events (want {want})")
    failed |= not (churned == history == events == want)
    print(
        f"\n| request | rows | median s | rows/s |\n|---|---:|---:|---:|\n"
        f"| first (all changed) | {args.rows} | {statistics.median(firsts):.2f} | "
        f"{args.rows / statistics.median(firsts):.0f} |\n"
        f"| resend (all unchanged) | {args.rows} | {statistics.median(resends):.2f} | "
        f"{args.rows / statistics.median(resends):.0f} |"
    )
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per request (default %(default)s)")
    parser.add_argument("--requests", type=int, default=3, help="rounds of first + resend (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave PostgreSQL running afterwards")
    args = parser.parse_args()
    with INFRA.postgres(keep=args.keep):
        code = asyncio.run(run(args))
    sys.exit(code)


if __name__ == "__main__":
    main()
