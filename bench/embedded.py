"""The embedded default under load: ``python -m bench.embedded`` (`make bench-embedded`).

The platform as `make run` starts it: one process per service (API, relay and consumer together) on its
own SQLite files, the gateway on its SQLite key store, one local Kafka broker; nothing of PostgreSQL. An
integration's API key (``python -m gateway key create --role integration``, as a deployment makes one) sends
single interactions (purchases, complaints, surveys) through the gateway, open loop at ``--rate`` for
``--seconds``, after a warm-up. The report gives:

* the rate achieved against the one offered, and the HTTP p50/p99 of the acknowledged requests, measured from
  each request's scheduled send time (a queue anywhere, the load generator's included, counts);
* CPU per acknowledged interaction of the whole process group (the four services, the gateway, the broker's
  JVM), idle work included, from the first send until the pipeline has drained (no unpublished outbox row,
  no consumer lag), and per process; the load generator's own CPU apart;
* the units that cost a fixed CPU each, per second and service: relay rounds and consumer batches.

``--runs N`` repeats the measured phase on the same platform and reports each run and the median.
``--profile DIR`` runs every Python process of the group under cProfile (CPU-time clock, `bench.profiled`) and
writes DIR/<process>.prof when the platform stops (the profiler's own cost inflates the CPU figures: profile
and measure in separate runs).

Its ports and state directory default apart from `make run`, `make test` and the other benchmarks; beside
another copy of it, move them: CRM_BENCH_EMBEDDED_STATE_DIR, CRM_BENCH_EMBEDDED_KAFKA_PORT (the controller
takes the next port) and CRM_BENCH_EMBEDDED_PORT_OFFSET (added to every service's and the gateway's port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.chaos import interaction_body
from bench.infra import Infra, cpu_seconds, pid_file, write_report
from bench.pipeline import percentile
from runner.launcher import SERVICES, Platform, platform_processes
from servicekit.settings import REPO_ROOT

# Ports apart from `make run`, `make test`, `make chaos` and the other benchmarks; no PostgreSQL is started.
T = TypeVar("T")
INFRA = Infra(
    Path(os.environ.get("CRM_BENCH_EMBEDDED_STATE_DIR", REPO_ROOT / ".state" / "bench-embedded")),
    kafka_port=int(os.environ.get("CRM_BENCH_EMBEDDED_KAFKA_PORT", "19592")),
    pg_port=0,
    port_offset=int(os.environ.get("CRM_BENCH_EMBEDDED_PORT_OFFSET", "24300")),
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sqlite_path(service: str) -> Path:
    return INFRA.state_dir / f"{service}.db"


def scalar(service: str, query: str) -> int:
    """One number from a service's SQLite file, read only (the service keeps writing)."""
    with contextlib.closing(sqlite3.connect(f"file:{sqlite_path(service)}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute(query).fetchone()[0])


def create_key() -> str:
    """An integration's API key, made as an operator makes one (the gateway's CLI on its store)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "key", "create", "--name", "bench-embedded", "--role", "integration"],
        check=True,
        env=INFRA.env(),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def group_pids(platform: Platform) -> dict[str, int]:
    pids = {name: running.popen.pid for name, running in platform.running.items()}
    kafka = pid_file(INFRA.state_dir / "kafka" / "kafka.pid")
    if kafka is not None:
        pids["kafka"] = kafka
    return pids


def cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_seconds(pid)
    return out


async def backlog(http: aiohttp.ClientSession) -> float:
    """Unpublished outbox rows in every store plus every consumer's lag: 0 when the pipeline is idle."""
    busy = 0.0
    for name in SERVICES:
        busy += scalar(name, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"http://127.0.0.1:{SERVICES[name] + INFRA.port_offset}/metrics") as resp:
                text = (await resp.read()).decode()
            busy += sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("crm_consumer_lag{")
            )
    return busy


async def counts(http: aiohttp.ClientSession) -> dict[str, float]:
    """Counters of the units that cost a fixed CPU each, per service: the relay's rounds that published
    (crm_outbox_publish_round_rows), and the consumer's batches that claimed an event (the inbox rows of one
    batch share their handled_at)."""
    out: dict[str, float] = {}
    for name in SERVICES:
        out[f"{name} batches"] = scalar(name, "SELECT count(DISTINCT handled_at) FROM inbox")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"http://127.0.0.1:{SERVICES[name] + INFRA.port_offset}/metrics") as resp:
                text = (await resp.read()).decode()
            for line in text.splitlines():
                if line.startswith("crm_outbox_publish_round_rows_count{"):
                    out[f"{name} relay rounds"] = float(line.rsplit(" ", 1)[1])
    return out


async def drained(http: aiohttp.ClientSession, timeout_s: float) -> float:
    """Seconds until the pipeline is idle twice in a row."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout_s:
        quiet = quiet + 1 if await backlog(http) == 0 else 0
        if quiet >= 2:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the pipeline did not drain within {timeout_s:g} s")


async def open_loop(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], customers: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    """Request n goes out at start + n/rate whatever the earlier ones are doing; latency from that time."""
    rng = random.Random(24)
    total = int(rate * seconds)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic() + 0.1

    async def one(scheduled: float) -> None:
        body = orjson.dumps(interaction_body(rng.choice(customers), rng))
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                statuses[str(resp.status)] += 1
                if 200 <= resp.status < 300:
                    latencies.append((time.monotonic() - scheduled) * 1000)
        except (aiohttp.ClientError, TimeoutError):
            statuses["no answer"] += 1

    for n in range(total):
        scheduled = start + n / rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        task = asyncio.create_task(one(scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.wait(set(in_flight))
    elapsed = time.monotonic() - start
    return {
        "offered_per_s": rate,
        "sent": total,
        "acknowledged": len(latencies),
        "achieved_per_s": round(len(latencies) / max(elapsed, seconds), 1),
        "by_status": dict(statuses),
        "http_ms": {
            "p50": round(percentile(latencies, 0.50), 1) if latencies else None,
            "p99": round(percentile(latencies, 0.99), 1) if latencies else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
    }


async def measure(
    http: aiohttp.ClientSession,
    platform: Platform,
    key_headers: dict[str, str],
    customers: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    url = f"{INFRA.gateway}/api/v1/interactions"
    pids = group_pids(platform)
    me = os.getpid()
    units_before = await counts(http)
    before, mine_before, load_before = cpu(pids), cpu_seconds(me), os.getloadavg()[0]
    wall = time.monotonic()
    phase = await open_loop(http, url, key_headers, customers, args.rate, args.seconds)
    drain_s = await drained(http, args.drain_timeout)
    wall = time.monotonic() - wall
    after, mine = cpu(pids), cpu_seconds(me) - mine_before
    units_after = await counts(http)
    acked = max(phase["acknowledged"], 1)
    per_process = {name: round((after[name] - before[name]) * 1000 / acked, 2) for name in after if name in before}
    total = sum(per_process.values())
    return phase | {
        "drain_s": round(drain_s, 1),
        "wall_s": round(wall, 1),
        "load": [load_before, os.getloadavg()[0]],
        "cpu_ms_per_interaction": round(total, 2),
        "cpu_ms_per_interaction_by_process": per_process,
        "cores_used": round(total * acked / 1000 / wall, 2),
        "load_generator_cpu_ms_per_interaction": round(mine * 1000 / acked, 2),
        "per_second": {k: round((units_after[k] - units_before.get(k, 0)) / wall, 1) for k in units_after},
    }


async def idle_cost(platform: Platform, seconds: float) -> dict[str, Any]:
    """Cores the group uses with nothing sent (polling, housekeeping, the broker's own work), per process."""
    pids = group_pids(platform)
    before, wall = cpu(pids), time.monotonic()
    await asyncio.sleep(seconds)
    after, wall = cpu(pids), time.monotonic() - wall
    by_process = {name: round((after[name] - before[name]) / wall, 4) for name in after if name in before}
    return {"seconds": round(wall, 1), "cores": round(sum(by_process.values()), 4), "cores_by_process": by_process}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
        "layout": "as make run: one process per service on SQLite, the gateway on SQLite, one Kafka broker",
        "args": vars(args),
    }
    specs = platform_processes(port_offset=INFRA.port_offset, extra_env={"KAFKA_BOOTSTRAP_SERVERS": INFRA.kafka})
    for spec in specs:
        if spec.name == "gateway":
            spec.env.update(UNTHROTTLED_ENV)  # the admin's customer import; the integration keeps its 200/s
        if args.profile is not None:
            assert spec.argv[1] == "-m", spec.argv
            out = args.profile.resolve() / f"{spec.name}.prof"
            spec.argv = [spec.argv[0], "-m", "bench.profiled", str(out), *spec.argv[2:]]
    log_dir = INFRA.state_dir / "logs"
    platform = Platform(specs, log_dir=log_dir, base_env=INFRA.env())
    try:
        platform.start_all()
        await asyncio.to_thread(platform.wait_ready, None, 240)
        key = await asyncio.to_thread(create_key)
        key_headers = {"X-API-Key": key, "content-type": "application/json"}
        connector = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            api = f"{INFRA.gateway}/api/v1"
            customers = await create_known_customers(http, api, "Embedded", args.customers)
            log(f"{len(customers)} customers known; warm-up {args.warmup:g} s at {args.rate:g}/s")
            await open_loop(http, f"{api}/interactions", key_headers, customers, args.rate, args.warmup)
            await drained(http, args.drain_timeout)
            if args.idle > 0:
                report["idle"] = await idle_cost(platform, args.idle)
                log(f"idle: {report['idle']['cores']} cores ({report['idle']['cores_by_process']})")
            report["runs"] = []
            for n in range(args.runs):
                await asyncio.sleep(2)
                result = await measure(http, platform, key_headers, customers, args)
                report["runs"].append(result)
                log(
                    f"run {n + 1}: {result['achieved_per_s']}/s of {args.rate:g}/s, {result['by_status']}, HTTP p50"
                    f" {result['http_ms']['p50']} ms p99 {result['http_ms']['p99']} ms, CPU"
                    f" {result['cpu_ms_per_interaction']} ms per interaction, load {result['load'][1]:.1f}"
                )
    finally:
        platform.stop_all()
    report["load_after"] = os.getloadavg()
    runs = report["runs"]
    report["median"] = {
        "cpu_ms_per_interaction": statistics.median(r["cpu_ms_per_interaction"] for r in runs),
        "http_p50_ms": statistics.median(r["http_ms"]["p50"] or 0 for r in runs),
        "http_p99_ms": statistics.median(r["http_ms"]["p99"] or 0 for r in runs),
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    args = report["args"]
    print(f"\n{report['layout']}; {report['machine']['cores']} cores; load before {report['machine']['load_before']}")
    if "idle" in report:
        idle = report["idle"]
        print(f"idle ({idle['seconds']:g} s, nothing sent): {idle['cores']} cores; {idle['cores_by_process']}")
    print(f"offered {args['rate']:g}/s of single interactions by an integration key, {args['seconds']:g} s per run")
    names = sorted({n for r in report["runs"] for n in r["cpu_ms_per_interaction_by_process"]})
    columns = ["run", "achieved/s", "answers", "p50 ms", "p99 ms", "max ms", "CPU ms/interaction", "load 1-min"]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for i, r in enumerate(report["runs"], 1):
        cells = [i, r["achieved_per_s"], r["by_status"], r["http_ms"]["p50"], r["http_ms"]["p99"], r["http_ms"]["max"],
                 r["cpu_ms_per_interaction"], f"{r['load'][0]:.1f}-{r['load'][1]:.1f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print("\nCPU ms per acknowledged interaction by process (send window + drain, idle work included):")
    print("| process | " + " | ".join(f"run {i}" for i in range(1, len(report["runs"]) + 1)) + " |")
    print("|---|" + "---:|" * len(report["runs"]))
    for name in [*names, "load generator (apart)"]:
        if name == "load generator (apart)":
            cells = [r["load_generator_cpu_ms_per_interaction"] for r in report["runs"]]
        else:
            cells = [r["cpu_ms_per_interaction_by_process"].get(name, 0.0) for r in report["runs"]]
        print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    units = sorted({k for r in report["runs"] for k in r.get("per_second", {})})
    if units:
        print("\nfixed-cost units per second (send window + drain):")
        for unit in units:
            print(f"| {unit} | " + " | ".join(str(r["per_second"].get(unit, 0)) for r in report["runs"]) + " |")
    median = report["median"]
    print(
        f"\nmedian of {len(report['runs'])}: CPU {median['cpu_ms_per_interaction']} ms per interaction, HTTP p50"
        f" {median['http_p50_ms']} ms, p99 {median['http_p99_ms']} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedded", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second through the gateway")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds at the rate before the first run")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=500, help="the load generator's connection cap")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--keep-state", action="store_true", help="keep the SQLite files and logs afterwards")
    parser.add_argument("--idle", type=float, default=0.0, help="seconds to measure the idle group's CPU, 0: not")
    parser.add_argument("--profile", type=Path, help="write a CPU profile of each process to this folder")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir.parent / "bench-embedded.json")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    report = on_fresh_local_kafka(lambda: run(args), keep_state=args.keep_state)
    write_report(report, args.json, print_report)


async def create_known_customers(http: aiohttp.ClientSession, api: str, name: str, count: int) -> list[str]:
    """Create `count` customers in one bulk request and wait (up to 300 s) until the interaction service knows
    them all, so the interactions sent next are never refused for an unknown customer; their ids."""
    rows = [{"name": f"{name} {i}", "kind": "person", "owner": "bench"} for i in range(count)]
    async with http.post(f"{api}/customers/bulk", json={"rows": rows}, headers=bearer_headers()) as resp:
        body = orjson.loads(await resp.read())
        if resp.status != 200:
            raise RuntimeError(f"bulk import answered {resp.status}: {str(body)[:300]}")
    customers = [r["id"] for r in body["rows"] if r["status"] == "created"]
    deadline = time.monotonic() + 300
    while scalar("interaction", "SELECT count(*) FROM known_customers") < len(customers):
        if time.monotonic() > deadline:
            raise TimeoutError("customer.created not applied by the interaction service within 300 s")
        await asyncio.sleep(0.5)
    return customers


def on_fresh_local_kafka(work: Callable[[], Coroutine[Any, Any, T]], *, keep_state: bool = True) -> T:
    """Run `work` on a fresh state folder and a fresh local broker with the platform's topics, as `make
    run` has them; the broker is stopped afterwards, the folder removed unless keep_state."""
    shutil.rmtree(INFRA.state_dir, ignore_errors=True)
    INFRA.state_dir.mkdir(parents=True)
    INFRA.kafka_ctl("reset")
    INFRA.kafka_ctl("start")
    try:
        subprocess.run(
            [sys.executable, "-m", "runner.topic_setup", "ensure"], check=True, env=INFRA.env(), cwd=REPO_ROOT
        )
        return asyncio.run(work())
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            INFRA.kafka_ctl("stop")
        if not keep_state:
            shutil.rmtree(INFRA.state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
