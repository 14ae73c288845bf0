"""The alerts a churn model's activation opens, on the first-day guide's book (docs/onboarding.md).

On a fresh platform (PostgreSQL, one process per service): `crm import cdnow` (2,357 customers, their
1997-98 purchases), the value refit, then a generated subscription book (`crm generate subscriptions`,
`crm import customers|interactions|statuses`), as the guide runs them. It counts the open alerts by
reason in retention's store, trains and activates the churn model (POST /models/churn/train, the
guide's `gbm`), waits until every rescoring is handled, and counts again: what the activation opened,
by reason and by segment (CDNOW or subscription), and retention's win-back counter.

    CRM_TEST_STATE_DIR=... CRM_TEST_KAFKA_PORT=... CRM_TEST_KAFKA_CONTROLLER_PORT=... CRM_TEST_PG_PORT=... \\
    CRM_TEST_PORT_OFFSET=... python -m bench.activation_alerts --customers 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.import_churn import KEEP_ATTRIBUTES_ENV
from bench.imports import INFRA, REPO_ROOT, ImportBacklog, crm_import, log
from bench.infra import report_start, run_on_fresh_infra, start_in_order, write_report
from cli.generate import AS_OF
from cli.generate import write as generate
from runner.launcher import SERVICES

JOB_TIMEOUT_S = 900
OPEN = (
    "SELECT coalesce(segment, '-') AS segment, reason, count(*) AS n FROM alerts "
    "WHERE status <> 'resolved' GROUP BY 1, 2"
)


async def open_alerts() -> Counter[tuple[str, str]]:
    connection = await asyncpg.connect(INFRA.database_url("retention", driver="postgresql"))
    try:
        return Counter({(r["segment"], r["reason"]): int(r["n"]) for r in await connection.fetch(OPEN)})
    finally:
        await connection.close()


async def drained() -> float:
    backlog = ImportBacklog(INFRA)
    await backlog.start()
    try:
        return await backlog.wait_drained(JOB_TIMEOUT_S)
    finally:
        await backlog.stop()


async def run_job(gateway: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await gateway.post(path, json=body)
    response.raise_for_status()
    job_id, started = response.json()["id"], time.perf_counter()
    while time.perf_counter() - started < JOB_TIMEOUT_S:
        job = (await gateway.get(f"/api/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed"):
            log(f"  {path}: {job['status']} in {time.perf_counter() - started:.0f} s")
            return dict(job)
        await asyncio.sleep(2)
    raise TimeoutError(path)


async def win_back_signals(client: httpx.AsyncClient) -> float | None:
    """retention's crm_retention_win_back_signals_total (None on a tree without it)."""
    url = f"http://127.0.0.1:{SERVICES['retention'] + INFRA.port_offset}/metrics"
    lines = (await client.get(url)).text.splitlines()
    found = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("crm_retention_win_back_signals_total")]
    return sum(found) if found else None


def import_cdnow() -> None:
    token = bearer_headers(role="admin", sub="bench-activation")["Authorization"].removeprefix("Bearer ")
    command = [sys.executable, "-m", "cli", "--gateway", INFRA.gateway, "import", "cdnow"]
    env = {**os.environ, "CRM_API_TOKEN": token, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    log(f"  crm import cdnow: exit {done.returncode}; {done.stdout.strip().splitlines()[-2:]}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = INFRA.state_dir / "data"
    mechanism = generate(data, args.customers, args.seed, args.as_of, None)
    platform = INFRA.fresh_platform(layout="combined", extra_env=UNTHROTTLED_ENV | KEEP_ATTRIBUTES_ENV)
    report: dict[str, Any] = {**report_start("combined"), "files": {k: mechanism[k] for k in ("customers", "churned")}}
    headers = bearer_headers(role="admin", sub="bench-activation")
    try:
        await start_in_order(platform)
        async with httpx.AsyncClient(base_url=INFRA.gateway, headers=headers, timeout=120) as gateway:
            await asyncio.to_thread(import_cdnow)
            await drained()
            await run_job(gateway, "/api/v1/models/value/refit", {})
            for kind in ("customers", "interactions", "statuses"):
                await asyncio.to_thread(crm_import, kind, data, 2000)
            await drained()
            before = await open_alerts()
            win_back_before = await win_back_signals(gateway)
            train = await run_job(gateway, "/api/v1/models/churn/train", {"algorithm": "gbm"})
            report["rescored"] = (train.get("result") or {}).get("rescored")
            report["drained_after_activation_s"] = round(await drained(), 1)
            await asyncio.sleep(5)
            after = await open_alerts()
            win_back_after = await win_back_signals(gateway)
    finally:
        platform.stop_all()
    opened = after - before
    report["load_after"] = os.getloadavg()
    report["open_before_activation"] = sum(before.values())
    report["open_after_activation"] = sum(after.values())
    report["opened_by_activation"] = {f"{s}/{r}": n for (s, r), n in sorted(opened.items())}
    if win_back_before is not None and win_back_after is not None:
        report["win_back_signals_from_activation"] = win_back_after - win_back_before
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nload before {report['machine']['load_before']}, after {report['load_after']}; rescored {report['rescored']}"
    )
    print(
        f"open alerts before the activation {report['open_before_activation']}, after {report['open_after_activation']}"
    )
    print("opened by the activation, by segment/reason:")
    for key, n in report["opened_by_activation"].items():
        print(f"  {key:>40}: {n}")
    print(f"win-back signals during the activation: {report.get('win_back_signals_from_activation', 'n/a')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF)
    parser.add_argument("--keep-infra", action="store_true")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "activation_alerts.json")
    args = parser.parse_args(argv)
    report = run_on_fresh_infra(INFRA, "bench.activation_alerts", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
