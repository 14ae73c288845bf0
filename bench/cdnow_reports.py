"""Every report on the CDNOW sample, on PostgreSQL: ``python -m bench.cdnow_reports [--out FILE]``.

Starts a private Kafka + PostgreSQL and the platform on them (bench.infra, one process per service, as
`make run` but on PostgreSQL), runs ``crm import cdnow`` through the gateway as an operator would (a
process of its own: customers with POST /customers/bulk, then purchases with POST /interactions/bulk,
rows rejected as retryable sent again), waits until the scoring service holds a score for every imported
customer and the retention read model has counted every purchase, refits the value model (tiers and
CLV need one), then asks every report through the gateway as an analyst. Writes the answers as Markdown
(``--out``, default docs/reports-cdnow-<today>.md: each report's scalar figures and its tables, long
tables cut to their first rows) and prints each answer as one JSON line. Stops everything it started.
Figures go in docs/, never in code. CDNOW has purchases only: no status history, complaints, surveys or
tasks, so those reports answer with zeros, and the customer service's cohorts (by first ``active``
change) all fall in the import month; the cohorts by first-purchase month are the ones to read.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, start_in_order
from servicekit.settings import REPO_ROOT

INFRA = Infra(REPO_ROOT / ".state" / "bench-cdnow", kafka_port=19962, pg_port=29597, port_offset=21300)
CUSTOMERS = 2357
PURCHASES = 6919
WAIT_S = 900
SPAN = "from=1997-01-01&to=1998-07-01"  # the sample's 18 months
IMPORTED = datetime.now(UTC).strftime("%Y-%m")  # the month the import creates the customers in
MAX_TABLE_ROWS = 70
REPORTS: list[str] = [
    "/reports/retention/cohorts?from=1997-01-01&to=1997-04-01&months=18",
    f"/reports/retention/task-sla?{SPAN}",
    f"/reports/customers/churn?{SPAN}",
    f"/reports/customers/churn-reasons?{SPAN}",
    f"/reports/customers/win-back?{SPAN}",
    "/reports/customers/cohorts?from=2026-01-01&to=2027-01-01&months=0",
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
    f"/reports/retention/reason-suggestions/accuracy?{SPAN}",
    "/reports/retention/loyalty/today",
    "/reports/retention/satisfaction-trap/today",
    "/retention/metrics?from=1997-01-01T00:00:00Z&to=1998-07-01T00:00:00Z&group_by=tier",
]


def markdown(path: str, status: int, body: Any) -> str:
    """One report's answer: its scalar figures on one line, then each list of rows as a table."""
    lines = [f"### `GET /api/v1{path}`", ""]
    if status != 200 or not isinstance(body, dict):
        return "\n".join([*lines, f"HTTP {status}: `{json.dumps(body)[:300]}`", ""])
    scalars = {k: v for k, v in body.items() if not isinstance(v, list | dict)}
    nested = {k: v for k, v in body.items() if isinstance(v, dict)}
    if scalars:
        lines += [", ".join(f"{k} **{_cell(v)}**" for k, v in scalars.items()), ""]
    for name, value in nested.items():
        flat = {k: v for k, v in value.items() if not isinstance(v, list | dict)}
        lines += [f"{name}: " + ", ".join(f"{k} **{_cell(v)}**" for k, v in flat.items()), ""]
        for key, rows in value.items():
            if isinstance(rows, list):
                lines += _table(f"{name}.{key}", rows)
    for name, rows in body.items():
        if isinstance(rows, list):
            lines += _table(name, rows)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)


def _table(name: str, rows: list[Any]) -> list[str]:
    if not rows:
        return [f"{name}: none", ""]
    if not isinstance(rows[0], dict):
        return [f"{name}: " + ", ".join(_cell(r) for r in rows), ""]
    columns = list(rows[0])
    shown = rows[:MAX_TABLE_ROWS]
    out = [f"{name} ({len(rows)} rows):", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in shown]
    if len(rows) > len(shown):
        out.append(f"| ... {len(rows) - len(shown)} more rows |" + " |" * (len(columns) - 1))
    return [*out, ""]


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


async def tiered() -> None:
    """Until the refit's rescoring has given every customer a value tier."""
    started = time.perf_counter()
    while time.perf_counter() - started < WAIT_S:
        tiered = await count("scoring", "SELECT count(*) FROM current_scores WHERE value_tier IS NOT NULL")
        log(f"  with a value tier {tiered}/{CUSTOMERS} after {time.perf_counter() - started:.0f} s")
        if tiered >= CUSTOMERS:
            return
        await asyncio.sleep(5)
    log("not every customer got a value tier in time; reporting anyway")


async def refit_value_model(client: httpx.AsyncClient) -> None:
    """Tiers and CLV exist only once a value model is fitted: refit it and wait for the job."""
    started = await client.post("/models/value/refit")
    if started.status_code not in (200, 201, 202):
        log(f"value refit refused: {started.status_code} {started.text[:300]}")
        return
    job = started.json()["id"]
    for _ in range(WAIT_S // 2):
        state = (await client.get(f"/jobs/{job}")).json()
        if state.get("status") in ("succeeded", "failed"):
            log(f"value refit {state['status']}")
            return
        await asyncio.sleep(2)


async def run(out: Path) -> None:
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
        admin = bearer_headers(role="admin", sub="cdnow")
        async with httpx.AsyncClient(base_url=f"{INFRA.gateway}/api/v1", headers=admin, timeout=300) as client:
            await refit_value_model(client)
        await tiered()
        headers = bearer_headers(role="analyst", sub="cdnow")
        sections = [
            f"# Every report on the CDNOW sample ({datetime.now(UTC).date().isoformat()})",
            "",
            "Written by `python -m bench.cdnow_reports` (see its docstring): `crm import cdnow` through the gateway",
            "on a fresh platform (PostgreSQL, Kafka), the value model refitted, then each report as an analyst.",
            "",
            "```",
            (done.stdout.strip()[-1500:] or "(no output)"),
            "```",
            "",
            "CDNOW holds purchases only (January 1997 to June 1998): no status history, complaints, surveys or",
            "tasks. So churn, complaint, satisfaction and task figures are zero or empty, the customer service's",
            f"cohorts (first `active` change) all fall in the import month ({IMPORTED}), and the tier history",
            "starts at the import. The cohorts by first-purchase month (`active_share`: the share of a cohort",
            "buying in each later month) and the value, concentration, RFM and loyalty figures are the ones to read.",
            "",
        ]
        async with httpx.AsyncClient(base_url=f"{INFRA.gateway}/api/v1", headers=headers, timeout=120) as client:
            for path in REPORTS:
                response = await client.get(path)
                for _ in range(10):  # the analyst role's request rate: wait as asked
                    if response.status_code != 429:
                        break
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    response = await client.get(path)
                body = response.json()
                print(json.dumps({"report": path, "status": response.status_code, "body": body}))
                sections.append(markdown(path, response.status_code, body))
        await asyncio.to_thread(out.write_text, "\n".join(sections).rstrip() + "\n", encoding="utf-8")
        log(f"written to {out}")
    finally:
        platform.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    today = datetime.now(UTC).date().isoformat()
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / f"reports-cdnow-{today}.md")
    args = parser.parse_args()
    INFRA.state_dir.mkdir(parents=True, exist_ok=True)
    with open(INFRA.state_dir / "bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        INFRA.start()
        try:
            asyncio.run(run(args.out))
        finally:
            INFRA.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
