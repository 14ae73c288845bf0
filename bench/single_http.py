"""Single posts over HTTP through the gateway to the interaction API on PostgreSQL: ``python -m bench.single_http``.

CPU per request of each process on the single-request path (the gateway, the interaction service's API
process, PostgreSQL's server and backends, and the load generator apart), and PostgreSQL transactions per
request, at a steady open-loop rate. Starts a private PostgreSQL (bench.infra, ``--pg-port``, state in
.state/bench-single-http) and only the two processes the path needs, with the platform's launcher: the
gateway and the interaction service's ``api`` role (no broker: its outbox rows wait for a relay that does
not run here, which costs the API nothing). The replica knows 1,000 customers, so every post is the common
case (a known customer, a new external_id, or none). The mix is bench.chaos's (purchases, complaints, NPS
answers), signed in by an admin token with an unthrottled rate limit (bench.auth).

CPU comes from /proc per process, per request answered (a refusal such as the gateway's 503 when it
sheds load costs far less than a post: the report gives the answers by status; run at a rate the box
keeps up with), over ``--seconds`` at ``--rate`` after a warm-up; the same tree's code
runs in every process, so old and new trees are compared by running this script in each (alternately).
A transaction is counted from pg_stat_database (xact_commit of the interaction database, the server's own
statistics): the common case is one statement in autocommit, one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, cpu_seconds, postgres_pids
from bench.write_path import CUSTOMERS, interaction
from runner.launcher import Platform
from servicekit.settings import REPO_ROOT

INFRA = Infra(REPO_ROOT / ".state" / "bench-single-http", kafka_port=32112, pg_port=32152, port_offset=20000)
PROCESSES = ("gateway", "interaction")


def platform() -> Platform:
    """The gateway and the interaction API only, on the private PostgreSQL."""
    whole = INFRA.fresh_platform(layout="split", extra_env=UNTHROTTLED_ENV)
    specs = [spec for name, spec in whole.specs.items() if name in PROCESSES]
    return Platform(specs, log_dir=INFRA.state_dir / "logs", base_env=INFRA.env())


def gateway_live(timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                if client.get(f"{INFRA.gateway}/health/live").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not answer /health/live")
            time.sleep(0.2)


async def seed() -> None:
    connection = await asyncpg.connect(INFRA.database_url("interaction", driver="postgresql"))
    try:
        now = datetime.now(UTC)
        await connection.executemany(
            "INSERT INTO known_customers (customer_id, version, erased, owner_known, updated_at)"
            " VALUES ($1, 1, false, false, $2) ON CONFLICT DO NOTHING",
            [(f"c-{i}", now) for i in range(CUSTOMERS)],
        )
    finally:
        await connection.close()


async def commits() -> int:
    connection = await asyncpg.connect(INFRA.database_url("interaction", driver="postgresql"))
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        value = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", INFRA.database("interaction")
        )
        return int(value)
    finally:
        await connection.close()


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    server = postgres_pids(INFRA.state_dir)
    figures = {name: cpu_seconds(pid) for name, pid in pids.items()}
    figures["postgres"] = sum(cpu_seconds(p, reaped_children=True) for p in server[:1]) + sum(
        cpu_seconds(p) for p in server[1:]
    )
    figures["load generator"] = time.process_time()
    return figures


async def drive(rate: float, seconds: float, start: int) -> tuple[int, int, list[float], Counter[str]]:
    """Open loop at `rate` for `seconds`: (answered 201, other answers, latencies in ms from due time, the
    answers by status)."""
    url = f"{INFRA.gateway}/api/v1/interactions"
    headers = {**bearer_headers(), "content-type": "application/json"}
    created, other, latencies = 0, 0, []
    statuses: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(n: int, due: float) -> None:
            nonlocal created, other
            body = orjson.dumps(interaction(f"c-{n % CUSTOMERS}", n))
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
                    if response.status == 201:
                        created += 1
                    else:
                        other += 1
            except aiohttp.ClientError as error:
                statuses[type(error).__name__] += 1
                other += 1
            latencies.append((time.perf_counter() - due) * 1000)

        tasks = []
        began = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(start + i, due)))
        await asyncio.gather(*tasks)
    return created, other, latencies, statuses


async def measure(pids: dict[str, int], rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    await drive(rate, warmup, 0)
    before, transactions = snapshot(pids), await commits()
    load = os.getloadavg()[0]
    created, other, latencies, statuses = await drive(rate, seconds, 10_000_000)
    after, transactions = snapshot(pids), await commits() - transactions
    latencies.sort()
    answered = created + other
    return {
        "created": created,
        "other": other,
        "statuses": dict(statuses),
        "load": (load, os.getloadavg()[0]),
        "cpu_ms": {name: (after[name] - before[name]) * 1000 / answered for name in after},
        "cpu_ms_per_201": {name: (after[name] - before[name]) * 1000 / max(created, 1) for name in after},
        "transactions": transactions / answered,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
    }


def main() -> None:
    global INFRA
    parser = argparse.ArgumentParser(prog="python -m bench.single_http", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="posts per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--pg-port", type=int, default=INFRA.pg_port)
    parser.add_argument("--port-offset", type=int, default=INFRA.port_offset, help="added to the services' ports")
    args = parser.parse_args()
    INFRA = dataclasses.replace(INFRA, pg_port=args.pg_port, port_offset=args.port_offset)
    with INFRA.postgres():
        processes = platform()
        try:
            processes.start_all()
            processes.wait_ready(["interaction"])
            gateway_live()  # its readiness asks every service it fronts; only the interaction service runs
            asyncio.run(seed())
            pids = {name: processes.running[name].popen.pid for name in PROCESSES}
            result = asyncio.run(measure(pids, args.rate, args.seconds, args.warmup))
        finally:
            processes.stop_all()
    print(
        f"\n{args.rate:.0f}/s for {args.seconds:.0f} s: {result['created']} answered 201,"
        f" {result['other']} other, by status {result['statuses']};"
        f" load average {result['load'][0]:.1f} -> {result['load'][1]:.1f};"
        f" p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms (on this loaded box: not a figure to hold)"
    )
    print("| process | CPU ms / request answered | CPU ms / post recorded (201) |\n|---|---:|---:|")
    for name, value in result["cpu_ms"].items():
        print(f"| {name} | {value:.3f} | {result['cpu_ms_per_201'][name]:.3f} |")
    totals = [sum(v for k, v in result[key].items() if k != "load generator") for key in ("cpu_ms", "cpu_ms_per_201")]
    print(f"| platform (gateway + interaction + PostgreSQL) | {totals[0]:.3f} | {totals[1]:.3f} |")
    print(f"\nPostgreSQL transactions per request: {result['transactions']:.2f}")


if __name__ == "__main__":
    main()
