"""CPU per interaction with tracing off and on at 100 % sampling, as a ratio in one run: ``python -m bench.tracing``
(`make bench-tracing`).

Starts a private Kafka + PostgreSQL and the platform on them (one process per service, as `make run`),
creates every customer the run needs, then runs phases alternately with tracing off and on (the platform's
processes restarted with or without OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER_ARG=1). Each phase:
a short warm-up, then severe complaints through the gateway at ``--rate`` for ``--seconds``, open loop,
each for a customer with no alert yet, until retention has committed every one's alert. The CPU the
platform's processes (services and gateway) and the broker and database server used over that window,
from /proc, divided by the complaints, is the phase's CPU per interaction. The ratio on / off is reported
as the mean of each mode's phases, as the median of the ratios of neighbouring phases (off-on and
on-off) and as the median of each on phase over the off phases either side of it, for the platform and
per process: on a shared machine whose load drifts over the run, the last two are the steadier figures
(the bracketed one also under a drift one way); three off/on rounds by default.

With tracing on the processes export to an OTLP/HTTP receiver in this process that only counts the spans
(bench.otlp): a collector's own work is not the platform's, the export (batching, encoding, the POST) is.
Each complaint is one trace: server and client spans at each HTTP hop, a span per SQL statement, the
publish and handle spans of its events (the report counts the spans received per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.infra import Infra, run_on_fresh_infra, start_in_order, write_report
from bench.otlp import OtlpReceiver
from bench.pipeline import cpu_snapshot, open_loop, watched_processes
from runner.launcher import Platform
from servicekit.settings import REPO_ROOT

# Ports apart from `make run`, `make test`, `make chaos` and `make bench`.
INFRA = Infra(REPO_ROOT / ".state" / "bench-tracing", kafka_port=19682, pg_port=55691, port_offset=24500)
WARM_UP = 40  # complaints before each measured window (connections, caches, first-call costs)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def complaint(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "type": "complaint",
        "channel": "phone",
        "initiated_by": "customer",
        "severity": "high",
        "category": "delivery",
        "text": "The order arrived two weeks late.",
        "external_id": f"bench-{uuid.uuid4()}",
    }


async def restart(platform: Platform, env: dict[str, str]) -> None:
    names = list(platform.specs)
    for name in reversed(names):
        platform.stop(name)
    for name in names:
        platform.start(name, env=env)
    await asyncio.to_thread(platform.wait_ready, None, 180)


async def create_customers(
    http: aiohttp.ClientSession, api: str, retention: asyncpg.Connection, count: int
) -> list[str]:
    ids: list[str] = []
    for offset in range(0, count, 2000):
        rows = [
            {"name": f"Bench {i}", "kind": "person", "owner": "bench", "segment": "bench"}
            for i in range(offset, min(count, offset + 2000))
        ]
        async with http.post(f"{api}/customers/bulk", json={"rows": rows}) as resp:
            body = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"bulk import answered {resp.status}: {str(body)[:300]}")
        ids += [r["id"] for r in body["rows"] if r["status"] == "created"]
    # Retention must know every customer before its complaints come (its replica, from customer.created).
    deadline = time.monotonic() + 300
    while await retention.fetchval("SELECT count(*) FROM customers WHERE customer_id = ANY($1)", ids) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("customer.created not applied by retention within 300 s")
        await asyncio.sleep(0.5)
    return ids


async def alerts_committed(retention: asyncpg.Connection, customers: list[str], timeout_s: float = 300) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await retention.fetchval(
            "SELECT count(DISTINCT customer_id) FROM alerts WHERE customer_id = ANY($1)", customers
        )
        if found >= len(customers) or time.monotonic() > deadline:
            return int(found)
        await asyncio.sleep(0.25)


async def phase(
    infra: Infra,
    platform: Platform,
    http: aiohttp.ClientSession,
    retention: asyncpg.Connection,
    customers: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    api = f"{infra.gateway}/api/v1"
    warm, measured = customers[:WARM_UP], customers[WARM_UP:]
    warmed = await open_loop(http, f"{api}/interactions", 20, len(warm) / 20,
                             lambda n: (warm[n], complaint(warm[n])), start=time.monotonic())  # fmt: skip
    await alerts_committed(retention, [o.key for o in warmed if 200 <= o.status < 300])
    await asyncio.sleep(2)
    pids = watched_processes(infra, platform)
    pids.pop("bench (load generator)", None)
    before, started = cpu_snapshot(pids), time.monotonic()
    outcomes = await open_loop(http, f"{api}/interactions", args.rate, args.seconds,
                               lambda n: (measured[n], complaint(measured[n])), start=time.monotonic())  # fmt: skip
    acknowledged = [o.key for o in outcomes if 200 <= o.status < 300]
    failed = Counter(str(o.status or "no answer") for o in outcomes if not 200 <= o.status < 300)
    committed = await alerts_committed(retention, acknowledged)
    elapsed = time.monotonic() - started
    after = cpu_snapshot(pids)
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    platform_s = sum(v for name, v in used.items() if name not in ("kafka", "postgres"))
    total_s = sum(used.values())
    n = max(len(acknowledged), 1)
    return {
        "complaints": len(outcomes),
        "acknowledged": len(acknowledged),
        "alerts_committed": committed,
        "failed_by_status": dict(failed),
        "seconds": round(elapsed, 1),
        "cpu_ms_per_interaction": {
            "services_and_gateway": round(platform_s / n * 1000, 2),
            "with_broker_and_database": round(total_s / n * 1000, 2),
            **{name: round(v / n * 1000, 2) for name, v in used.items()},
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    infra = INFRA
    log_dir = infra.state_dir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    # The gateway's rate limits stay on (the bench's caller is unthrottled by quota, not by switching the
    # limiter off) unless --no-rate-limit: a refused complaint is not an interaction and is reported apart.
    env = {**UNTHROTTLED_ENV, **({"GATEWAY_RATE_LIMIT": "false"} if args.no_rate_limit else {})}
    platform = infra.platform(layout="combined", log_dir=log_dir, extra_env=env)
    sink = OtlpReceiver(keep=False).start()
    modes = ["off", "on"] * args.rounds
    on_env = dict(pair.split("=", 1) for pair in args.on_env)
    per_phase = WARM_UP + int(args.rate * args.seconds)
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()},
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args),
        "phases": [],
    }
    retention = await asyncpg.connect(infra.database_url("retention", driver="postgresql"))
    try:
        await start_in_order(platform)
        connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=3)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=bearer_headers()) as http:
            log(f"creating {per_phase * len(modes)} customers")
            customers = await create_customers(http, f"{infra.gateway}/api/v1", retention, per_phase * len(modes))
            for i, mode in enumerate(modes):
                tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_TRACES_SAMPLER_ARG": "1", **on_env}
                await restart(platform, tracing_env if mode == "on" else {})
                spans_before = sink.span_count
                log(f"phase {i + 1}/{len(modes)}: tracing {mode}, {args.rate:g} complaints/s for {args.seconds:g} s")
                result = await phase(
                    infra, platform, http, retention, customers[i * per_phase : (i + 1) * per_phase], args
                )
                await asyncio.sleep(1)  # the last spans' export (BatchSpanProcessor)
                result = {"tracing": mode, **result, "spans_received": sink.span_count - spans_before}
                log(json.dumps(result))
                report["phases"].append(result)
    finally:
        platform.stop_all()
        sink.stop()
        await retention.close()
    report.update(ratios(report["phases"]))
    report["load_after"] = os.getloadavg()
    return report


def neighbour_ratios(phases: list[dict[str, Any]], key: str) -> list[float]:
    """on / off of every two neighbouring phases (off-on and on-off): a drift of the machine's load over the
    run cancels out of the median of these, where the mean of each mode's phases keeps it."""
    values = [(p["tracing"], p["cpu_ms_per_interaction"].get(key)) for p in phases]
    found = []
    for (mode_a, a), (mode_b, b) in itertools.pairwise(values):
        if a and b and mode_a != mode_b:
            found.append(b / a if mode_b == "on" else a / b)
    return found


def bracketed_ratios(phases: list[dict[str, Any]], key: str) -> list[float]:
    """Each on phase over the mean of the off phases either side of it (one side at an end): a load that
    drifts one way through the run biases off-on and on-off pairs in opposite directions, this not at all."""
    found = []
    for i, phase in enumerate(phases):
        value = phase["cpu_ms_per_interaction"].get(key)
        sides = [
            p["cpu_ms_per_interaction"].get(key)
            for p in phases[max(i - 1, 0) : i] + phases[i + 1 : i + 2]
            if p["tracing"] == "off"
        ]
        sides = [v for v in sides if v]
        if phase["tracing"] == "on" and value and sides:
            found.append(value / (sum(sides) / len(sides)))
    return found


def ratios(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratio on / off: the mean of each mode's phases, and the median of neighbouring phases' ratios,
    for the platform, with the broker and database, and per process."""
    out: dict[str, Any] = {}
    keys = list(phases[0]["cpu_ms_per_interaction"]) if phases else []
    for key in keys:
        off = [p["cpu_ms_per_interaction"][key] for p in phases if p["tracing"] == "off"]
        on = [p["cpu_ms_per_interaction"][key] for p in phases if p["tracing"] == "on"]
        if off and on and sum(off):
            out.setdefault("ratio_on_over_off", {})[key] = round((sum(on) / len(on)) / (sum(off) / len(off)), 3)
        if pairs := neighbour_ratios(phases, key):
            out.setdefault("ratio_median_of_neighbours", {})[key] = round(statistics.median(pairs), 3)
            if key == "services_and_gateway":
                out["neighbour_ratios_services_and_gateway"] = [round(r, 3) for r in pairs]
        if bracketed := bracketed_ratios(phases, key):
            out.setdefault("ratio_median_bracketed", {})[key] = round(statistics.median(bracketed), 3)
            if key == "services_and_gateway":
                out["bracketed_ratios_services_and_gateway"] = [round(r, 3) for r in bracketed]
    return out


def print_report(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}, load after: {report['load_after']}")
    columns = ["phase", "tracing", "complaints", "alerts committed", "spans received"]
    columns += ["CPU ms/interaction (services + gateway)", "CPU ms/interaction (+ Kafka + PostgreSQL)"]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for n, p in enumerate(report["phases"], start=1):
        cpu = p["cpu_ms_per_interaction"]
        cells = [n, p["tracing"], f"{p['acknowledged']}/{p['complaints']}", p["alerts_committed"], p["spans_received"]]
        cells += [cpu["services_and_gateway"], cpu["with_broker_and_database"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nratio on / off, mean of phases: {report.get('ratio_on_over_off')}")
    print(f"ratio on / off, median of neighbouring phases: {report.get('ratio_median_of_neighbours')}")
    print(f"neighbouring phases' ratios (services + gateway): {report.get('neighbour_ratios_services_and_gateway')}")
    print(f"ratio on / off, each on phase over the off phases beside it: {report.get('ratio_median_bracketed')}")
    print(f"  of which (services + gateway): {report.get('bracketed_ratios_services_and_gateway')}")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=15.0, help="complaints/s in each measured window")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each measured window")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs (phases alternate off, on, off, on ...)")
    parser.add_argument("--no-rate-limit", action="store_true", help="GATEWAY_RATE_LIMIT=false in every phase")
    parser.add_argument(
        "--on-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra variable for the tracing-on phases, e.g. OTEL_TRACE_SQL=false (repeatable)",
    )
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running afterwards")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "tracing.json")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped from outside: still stop the platform and the infrastructure
    report = run_on_fresh_infra(INFRA, "bench.tracing", lambda: run(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
