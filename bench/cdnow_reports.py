"""Every report on the CDNOW sample, on PostgreSQL: ``python -m bench.cdnow_reports``.

Starts a private Kafka + PostgreSQL and the platform on them (bench.infra, one process per service, as
`make run` but on PostgreSQL), runs ``crm import cdnow`` through the gateway as an operator would (a
process of its own), waits until the scoring service holds a score for every imported customer and the
retention read model has counted every purchase, then asks every report through the gateway as an
analyst and prints each answer's key figures (JSON, one line per report). Stops everything it started.
Figures go in docs/reports.md ("CDNOW figures"), never in code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import asyncpg
import httpx

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, start_in_order
from servicekit.settings import REPO_ROOT

INFRA = Infra(REPO_ROOT / ".state" / "bench-cdnow", kafka_port=19892, pg_port=55587, port_offset=25700)
CUSTOMERS = 2357
PURCHASES = 6919
WAIT_S = 900
SPAN = "from=1997-01-01&to=1998-07-01"  # the sample's 18 months
REPORTS: list[str] = [
    f"/reports/customers/churn?{SPAN}",
    f"/reports/customers/churn-reasons?{SPAN}",
    f"/reports/customers/win-back?{SPAN}",
    "/reports/customers/cohorts?from=2026-01-01&to=2027-01-01&months=12",
    f"/reports/complaints?{SPAN}",
    "/reports/value/pyramid?basis=contribution",
    "/reports/value/pyramid?basis=clv",
    "/reports/value/concentration?basis=contribution&points=10",
    "/reports/value/concentration?basis=clv&points=10",
    "/reports/value/rfm",
    "/reports/value/summary",
    "/reports/value/tier-migration?from=2026-01-01&to=2027-01-01",
    "/reports/retention/loyalty?from=1998-01-01&to=1998-07-01",
    "/reports/retention/loyalty?from=1997-04-01&to=1997-07-01",
    "/reports/retention/satisfaction-trap?from=1998-01-01&to=1998-07-01",
    f"/reports/retention/satisfaction?{SPAN}",
    f"/reports/retention/value-lost?{SPAN}",
    f"/reports/retention/reason-mix?{SPAN}&group_by=segment",
    f"/reports/retention/complaint-conversion?{SPAN}",
    f"/reports/retention/owners?{SPAN}",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def count(service: str, sql: str) -> int:
    connection = await asyncpg.connect(INFRA.database_url(service, driver="postgresql"))
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def settle() -> None:
    """Until every customer is scored and retention's facts hold every purchase."""
    started = time.perf_counter()
    while time.perf_counter() - started < WAIT_S:
        scored = await count("scoring", "SELECT count(*) FROM current_scores")
        orders = await count("retention", "SELECT coalesce(sum(orders), 0) FROM customer_facts")
        waited = time.perf_counter() - started
        log(f"  scored {scored}/{CUSTOMERS}, retention orders {orders}/{PURCHASES} after {waited:.0f} s")
        if scored >= CUSTOMERS and orders >= PURCHASES:
            return
        await asyncio.sleep(5)
    raise SystemExit("the platform did not settle in time")


async def run() -> None:
    log_dir = INFRA.state_dir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    platform = INFRA.platform(layout="combined", log_dir=log_dir, extra_env=UNTHROTTLED_ENV)
    try:
        await start_in_order(platform)
        token = bearer_headers(role="admin", sub="cdnow")["Authorization"].removeprefix("Bearer ")
        command = [sys.executable, "-m", "cli", "--gateway", INFRA.gateway, "import", "cdnow"]
        log(f"$ crm --gateway {INFRA.gateway} import cdnow")
        env = {**os.environ, "CRM_API_TOKEN": token, "PYTHONPATH": str(REPO_ROOT)}
        done = await asyncio.to_thread(
            subprocess.run, command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        log(done.stdout[-1500:] + done.stderr[-1500:])
        if done.returncode != 0:
            raise SystemExit(f"crm import cdnow exited {done.returncode}")
        await settle()
        headers = bearer_headers(role="analyst", sub="cdnow")
        async with httpx.AsyncClient(base_url=f"{INFRA.gateway}/api/v1", headers=headers, timeout=120) as client:
            for path in REPORTS:
                response = await client.get(path)
                print(json.dumps({"report": path, "status": response.status_code, "body": response.json()}))
    finally:
        platform.stop_all()


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    INFRA.state_dir.mkdir(parents=True, exist_ok=True)
    with open(INFRA.state_dir / "bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        INFRA.start()
        try:
            asyncio.run(run())
        finally:
            INFRA.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
