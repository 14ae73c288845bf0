"""Memory soak: ``python -m bench.soak`` (`make bench-soak`).

A steady stream of interactions (purchases, complaints, surveys) flows through the gateway for N minutes
at a fixed rate, on a fresh Kafka + PostgreSQL with every service split into API, relay and consumer
processes. Every ~10 s the resident memory (RSS) of each process is sampled: each platform process, the
broker's JVM and PostgreSQL (postmaster and backends together). The report compares each process's RSS
right after the warm-up with its RSS at the end (the median of the last three samples, so one sample
taken mid-collection does not decide) and flags growth of 5% or more.

When the stream ends and the pipeline has drained, the counts are checked as `make chaos` checks them:
every acknowledged interaction stored, scored exactly once, every severe complaint counted once in its
customer's alert.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

from bench.auth import UNTHROTTLED_ENV, bearer_headers
from bench.chaos import Row, Run, failures, verify, wait_idle
from bench.infra import (
    Infra,
    pid_file,
    postgres_pids,
    report_start,
    rss_mib,
    run_on_fresh_infra,
    start_in_order,
    write_report,
)
from bench.loadgen import Offered, offer
from bench.memtrace import compare
from bench.pgmemory import by_database, by_group, client_backends, log_contexts, resident_mib, server_processes
from bench.pipeline import percentile
from bench.soak_probes import ask_trim, print_pg_groups, print_probes, probe_report, wrap
from bench.soak_twins import add_twins, consumer_costs, cost_rows, print_costs
from servicekit.settings import REPO_ROOT


def soak_infra(env: dict[str, str]) -> Infra:
    """Its own ports and state directory, so a 30-minute run holds no shared lock: CRM_TEST_STATE_DIR,
    CRM_TEST_KAFKA_PORT, CRM_TEST_KAFKA_CONTROLLER_PORT, CRM_TEST_PG_PORT (as deploy/test.sh reads them) and
    CRM_SOAK_PORT_OFFSET (where the platform's processes listen) override the private defaults."""
    kafka_port = int(env.get("CRM_TEST_KAFKA_PORT", "31500"))
    return Infra(
        Path(env.get("CRM_TEST_STATE_DIR", REPO_ROOT / ".state" / "bench-soak")),
        kafka_port=kafka_port,
        kafka_controller_port=int(env.get("CRM_TEST_KAFKA_CONTROLLER_PORT", kafka_port + 1)),
        pg_port=int(env.get("CRM_TEST_PG_PORT", "31532")),
        port_offset=int(env.get("CRM_SOAK_PORT_OFFSET", "18000")),
    )


INFRA = soak_infra(dict(os.environ))
KAFKA_HEAP = "-Xms512m -Xmx512m -XX:+AlwaysPreTouch"  # deploy/kafka.sh's -Xmx, fixed (KAFKA_HEAP_OPTS overrides)
TWIN_HELP = "one more instance of that consumer, in its group, with these settings (repeatable; bench.soak_twins)"
GROWTH_LIMIT = 0.05  # RSS may grow less than this share between the end of the warm-up and the end


def process_pids(run: Run) -> dict[str, int]:
    """Every single process to watch, by name: the platform's and the broker's JVM."""
    pids = {name: proc.popen.pid for name, proc in run.platform.running.items() if proc.popen.poll() is None}
    kafka = pid_file(run.infra.state_dir / "kafka" / "kafka.pid")
    if kafka is not None:
        pids["kafka"] = kafka
    return pids


async def consumer_lag(run: Run) -> dict[str, float]:
    """Each consumer process's lag (records behind, all its partitions), from its own metrics."""
    lags: dict[str, float] = {}
    for name, proc in list(run.platform.running.items()):
        if not name.endswith("-consumer"):
            continue
        with contextlib.suppress(httpx.HTTPError):
            text = (await run.gateway.get(f"http://127.0.0.1:{proc.spec.port}/metrics", timeout=5)).text
            lags[name] = sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("crm_consumer_lag{")
            )
    return lags


def sample(run: Run, labels: dict[int, str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """RSS in MiB per watched process at this moment; PostgreSQL as the private memory (RssAnon) of its
    server and backends together. Each backend's RSS also counts the shared buffers it has touched (RssShmem),
    which fill up to shared_buffers as the data grows: a cache, not a leak, so it is kept apart, per group
    of server processes (bench.pgmemory.by_group) with their private memory."""
    out: dict[str, float] = {}
    for name, pid in process_pids(run).items():
        with contextlib.suppress(OSError):
            out[name] = round(rss_mib(pid), 1)
    memory: dict[int, dict[str, float]] = {}
    for pid in postgres_pids(run.infra.state_dir):
        with contextlib.suppress(OSError):  # a backend that has just exited
            memory[pid] = resident_mib(Path(f"/proc/{pid}/status").read_text())
    out["postgresql (private, all backends)"] = round(sum(m["anon"] for m in memory.values()), 1)
    return out, by_group(labels, memory)


async def sampler(
    run: Run, stats: Offered, samples: list[dict[str, Any]], args: argparse.Namespace, stop: asyncio.Event
) -> None:
    started = time.monotonic()
    last_t, last_acked, last_dump = 0.0, 0, -args.probe_every
    while not stop.is_set():
        elapsed = time.monotonic() - started
        acked = len(run.acknowledged)
        rate = (acked - last_acked) / (elapsed - last_t) if elapsed > last_t else 0.0
        backends: dict[int, str] = {}
        labels: dict[int, str] = {}
        dumped: dict[str, Any] = {}
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            backends = await client_backends(run.infra)
            labels = await server_processes(run.infra)
            if args.probe_every > 0 and elapsed - last_dump >= args.probe_every:
                # Each backend's memory contexts into the server log, read back after the run.
                await log_contexts(run.infra, list(backends))
                last_dump = elapsed
                dumped = {"pg_dumped_at": time.time(), "pg_backends": backends}
        rss, pg_groups = sample(run, labels)
        samples.append(
            {
                "t_s": round(elapsed, 1),
                "load": os.getloadavg()[0],
                "acknowledged": acked,
                "acknowledged_per_s": round(rate, 1),
                "in_flight": stats.in_flight,
                "rss_mib": rss,
                "pg_groups": pg_groups,
                "pg_shared_touched_mib": max((g["shmem_max_mib"] for g in pg_groups.values()), default=0.0),
                "consumer_lag": await consumer_lag(run),
                "pg_by_database": by_database(backends),
            }
            | dumped
        )
        last_t, last_acked = elapsed, acked
        run.log(
            f"{elapsed / 60:5.1f} min: {acked} acknowledged ({rate:.1f}/s of {stats.rate:g}/s offered),"
            f" {stats.in_flight} in flight, answers {dict(stats.answers)}, load {os.getloadavg()[0]:.1f},"
            f" consumer lag {samples[-1]['consumer_lag']}"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.every)


def growth(samples: list[dict[str, Any]], warmup_s: float) -> list[dict[str, Any]]:
    """Per process: RSS at the first sample after the warm-up, at the end (median of the last three), max."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 2:
        return []
    names = sorted({name for s in after for name in s["rss_mib"]})
    rows = []
    for name in names:
        series = [s["rss_mib"][name] for s in after if name in s["rss_mib"]]
        if len(series) < 2:
            continue
        start = series[0]
        end = statistics.median(series[-3:])
        rows.append(
            {
                "process": name,
                "after_warmup_mib": start,
                "end_mib": end,
                "max_mib": max(series),
                "growth": (end - start) / start if start else 0.0,
            }
        )
    return rows


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    report = report_start("split")
    report |= {"minutes": args.minutes, "rate": args.rate, "warmup_minutes": args.warmup}
    report["kafka_heap_opts"] = os.environ.get("KAFKA_HEAP_OPTS")
    platform = INFRA.fresh_platform(layout="split", extra_env=UNTHROTTLED_ENV)
    report["twins"] = add_twins(platform, args.twin)
    traced = INFRA.state_dir / "memtrace"
    shutil.rmtree(traced, ignore_errors=True)
    for name in {args.trace_memory, *args.probe} - {None}:
        # Through bench.memtrace: tracemalloc snapshots (--trace-memory) and/or statement-cache probes (--probe).
        extra = ["--every", str(args.trace_every)] if name == args.trace_memory else ["--no-snapshots"]
        if name in args.probe:
            extra += ["--probe-every", str(args.probe_every)]
        wrap(platform.specs[name], traced / name, extra)
    try:
        await start_in_order(platform, timeout_s=args.start_timeout)
        async with httpx.AsyncClient(
            base_url=INFRA.gateway, timeout=15, limits=httpx.Limits(max_connections=64)
        ) as gateway:
            run = Run(INFRA, platform, gateway, headers=bearer_headers(sub="soak"))
            for i in range(args.customers):
                response = await gateway.post(
                    "/api/v1/customers",
                    headers=run.headers,
                    json={"name": f"Soak {i}", "kind": "company", "owner": "agent-1"},
                )
                response.raise_for_status()
                run.customers.append(response.json()["id"])
            run.log(f"{args.customers} customers; {args.minutes} min at {args.rate}/s (warm-up {args.warmup} min)")
            samples: list[dict[str, Any]] = []
            stats = Offered(args.rate)
            stop_sampling = asyncio.Event()
            sampling = asyncio.create_task(sampler(run, stats, samples, args, stop_sampling))
            stop_stream = asyncio.Event()
            # The load generator's own client: aiohttp costs the shared cores less per request than httpx.
            connector = aiohttp.TCPConnector(limit=args.max_in_flight, keepalive_timeout=30)
            async with aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=30),
                headers={"content-type": "application/json"},
            ) as http:
                load = asyncio.create_task(offer(run, http, stats, stop_stream, args.max_in_flight))
                await asyncio.sleep(args.warmup * 60)
                run.scenario = "soak"
                run.ran.append("soak")
                soak_started, soak_acked = time.monotonic(), len(run.acknowledged)
                costs = await consumer_costs(platform, gateway)
                report["soak_started_at"] = time.time()
                await asyncio.sleep((args.minutes - args.warmup) * 60)
                stop_stream.set()
                report["consumer_costs"] = cost_rows(costs, await consumer_costs(platform, gateway))
                report["soak_acknowledged_per_s"] = round(
                    (len(run.acknowledged) - soak_acked) / (time.monotonic() - soak_started), 1
                )
                await load
            stop_sampling.set()
            await sampling
            report["offered"] = {
                "rate": args.rate,
                "scheduled": stats.scheduled,
                "answers": dict(stats.answers),
                "retries": stats.retries,
                "max_behind_s": round(stats.max_behind_s, 2),
                "http_ms": {
                    "p50": round(percentile(stats.latency_ms, 0.5), 1) if stats.latency_ms else None,
                    "p99": round(percentile(stats.latency_ms, 0.99), 1) if stats.latency_ms else None,
                },
            }
            run.log(f"stream done: {len(run.acknowledged)} acknowledged; waiting for the pipeline to drain")
            drain_started = time.monotonic()
            await wait_idle(run, timeout_s=args.drain_timeout)
            report["drain_s"] = round(time.monotonic() - drain_started, 1)
            await ask_trim(args.probe, traced)  # how much of each probed process's memory glibc kept
            rows, summary = await verify(run)
    finally:
        platform.stop_all()
    report |= probe_report(args.probe, traced, INFRA.state_dir / "postgres" / "server.log", samples)
    if args.trace_memory:
        traced = traced / args.trace_memory
        marks = [json.loads(line) for line in (traced / "marks.jsonl").read_text().splitlines()]
        after = [m for m in marks if m["at"] >= report["soak_started_at"]]
        if len(after) >= 2:
            report["memtrace"] = {"process": args.trace_memory, "marks": marks} | compare(
                traced, after[0]["n"], after[-1]["n"]
            )
    report["load_after"] = os.getloadavg()
    report["acknowledged_per_s"] = round(len(run.acknowledged) / (args.minutes * 60), 1)
    report["samples"] = samples
    report["rss"] = growth(samples, args.warmup * 60)
    report["counts"] = [row.__dict__ for row in rows]
    report["summary"] = summary
    problems = [p for p in failures(rows, summary) if "no duplicate delivery" not in p]
    if report["soak_acknowledged_per_s"] < 0.95 * args.rate:
        problems.append(f"the offered {args.rate:g}/s was not held: {report['soak_acknowledged_per_s']}/s acknowledged")
    problems += [
        f"{r['process']}: RSS grew {r['growth']:.1%} after the warm-up"
        for r in report["rss"]
        if r["growth"] >= GROWTH_LIMIT
    ]
    report["problems"] = problems
    return report


def minute_series(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first sample of each minute of the stream, and the last one."""
    picked: dict[int, dict[str, Any]] = {}
    for s in samples:
        picked.setdefault(int(s["t_s"] // 60), s)
    series = list(picked.values())
    if samples and series[-1] is not samples[-1]:
        series.append(samples[-1])
    return series


def print_report(report: dict[str, Any]) -> None:
    loads = [s["load"] for s in report["samples"]]
    print(
        f"\nsoak: {report['minutes']} min at {report['rate']}/s through the gateway, warm-up {report['warmup_minutes']}"
        f" min ({report['acknowledged_per_s']}/s acknowledged on average, {report['soak_acknowledged_per_s']}/s"
        f" after the warm-up); {report['machine']['cores']} cores,"
        f" load average (1 min) during the run"
        f" {min(loads):.1f}-{max(loads):.1f}, median {statistics.median(loads):.1f}"
    )
    offered = report["offered"]
    print(
        f"offered {offered['rate']:g}/s: {offered['scheduled']} sends scheduled, answers {offered['answers']},"
        f" {offered['retries']} retries, at most {offered['max_behind_s']} s behind schedule;"
        f" HTTP p50 {offered['http_ms']['p50']} ms, p99 {offered['http_ms']['p99']} ms (from the scheduled time)"
    )
    print("\n| process | RSS after warm-up MiB | RSS at end MiB | max MiB | growth |")
    print("|---|---:|---:|---:|---:|")
    for r in report["rss"]:
        print(
            f"| {r['process']} | {r['after_warmup_mib']:.1f} | {r['end_mib']:.1f} | {r['max_mib']:.1f} |"
            f" {r['growth']:+.1%} |"
        )
    series = minute_series(report["samples"])
    if series:
        print("\nRSS MiB about once a minute (minute of the stream), with the consumers' lag (records behind):")
        print("| process | " + " | ".join(f"{s['t_s'] / 60:.0f}" for s in series) + " |")
        print("|---|" + "---:|" * len(series))
        for name in sorted(series[-1]["rss_mib"]):
            print(f"| {name} | " + " | ".join(f"{s['rss_mib'].get(name, 0.0):.1f}" for s in series) + " |")
        for name in sorted(series[-1].get("consumer_lag", {})):
            print(f"| lag {name} | " + " | ".join(f"{s['consumer_lag'].get(name, 0.0):.0f}" for s in series) + " |")
        print("| acknowledged/s | " + " | ".join(f"{s.get('acknowledged_per_s', 0.0):.1f}" for s in series) + " |")
        print_pg_groups(series)
    print("\n| phase | sent | acked | stored | scored | severe | dup deliv | dup effects | lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in report["counts"]:
        row = Row(**c)
        if not row.sent and not row.acknowledged:
            continue
        print(
            f"| {row.scenario} | {row.sent} | {row.acknowledged} | {row.stored} | {row.scored} | {row.alerts_expected}"
            f" | {row.duplicates_delivered} | {row.duplicated_effects} | {row.lost} |"
        )
    summary = report["summary"]
    print(
        f"\nsevere complaints counted in alerts: surplus {summary['alerts_surplus']},"
        f" missing {summary['alerts_missing']}; drained in {report['drain_s']} s"
    )
    print_probes(report)
    print_costs(report)
    if "memtrace" in report:
        trace = report["memtrace"]
        print(f"\n{trace['process']} under tracemalloc, marks (t_s, RSS MiB, traced MiB):")
        print("  " + ", ".join(f"({m['t_s']}, {m['rss_mib']}, {m['traced_mib']})" for m in trace["marks"]))
        print(f"grown between {trace['from']} and {trace['to']} (freed elsewhere {trace['shrunk_kib']} KiB):")
        for g in trace["grown"]:
            print(f"  {g['kib']:+9.1f} KiB {g['blocks']:+7d} blocks  {g['at']}")
    if report["problems"]:
        print("\nFAILED:\n- " + "\n- ".join(report["problems"]))
    else:
        print("\nevery process's RSS flat after the warm-up (growth under 5%); every count checks out")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the stream")
    parser.add_argument("--rate", type=float, default=100.0, help="interactions per second through the gateway")
    parser.add_argument(
        "--warmup", type=float, default=None, help="minutes before the RSS baseline (default: a sixth of the run)"
    )
    parser.add_argument("--max-in-flight", type=int, default=256, help="unanswered requests at most, then it waits")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds the pipeline may take to drain")
    parser.add_argument("--json", type=Path, default=INFRA.state_dir / "soak.json", help="where the report goes")
    parser.add_argument("--trace-memory", metavar="PROCESS", help="that process under tracemalloc")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds each process may take to start")
    parser.add_argument("--twin", action="append", default=[], metavar="PROCESS:VAR=VALUE,...", help=TWIN_HELP)
    parser.add_argument("--trace-every", type=float, default=60.0, help="seconds between its snapshots")
    parser.add_argument(
        "--probe", action="append", default=[], metavar="PROCESS", help="that process's statement caches (repeatable)"
    )
    parser.add_argument("--probe-every", type=float, default=60.0, help="seconds between probes and PG dumps (0: none)")
    parser.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.minutes / 6
    if not 0 < args.warmup < args.minutes:
        parser.error("--warmup must be shorter than --minutes")
    # The broker's heap committed and touched at start (as Kafka's own guidance sizes it: -Xms = -Xmx): a
    # heap growing from -Xms towards -Xmx raises the JVM's RSS for minutes without any leak, and hides one.
    os.environ.setdefault("KAFKA_HEAP_OPTS", KAFKA_HEAP)
    report = run_on_fresh_infra(INFRA, "bench.soak", lambda: soak(args), keep_infra=args.keep_infra)
    write_report(report, args.json, print_report)
    if report["problems"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
