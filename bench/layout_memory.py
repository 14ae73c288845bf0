"""The memory price of a process layout on the embedded default: ``python -m bench.layout_memory``.

Starts the platform as `make run` does (SQLite stores, the gateway on SQLite, one local Kafka broker; bench.embedded's
ports and state directory, CRM_BENCH_EMBEDDED_*) once per layout in --layouts (CRM_LAYOUT's values: `combined`,
one process per service; `consumer-apart`, each service's consumer in a process of its own), and for each:

* idle: after the customers' import and a drained warm-up, --idle seconds with nothing sent;
* load: single interactions through the gateway at --rate for --seconds (bench.embedded's open loop).

Every 2 s it reads each process's RSS and PSS (/proc/<pid>/smaps_rollup: shared pages divided among the processes
that map them, so a sum of PSS does not count the interpreter's shared pages twice) and reports, per phase, the
median of the sums over the phase (and the largest), per process and for the group without and with the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.auth import UNTHROTTLED_ENV
from bench.embedded import (
    INFRA,
    create_key,
    create_known_customers,
    drained,
    group_pids,
    on_fresh_local_kafka,
    open_loop,
)
from bench.infra import write_report
from runner.launcher import LAYOUTS, Platform, platform_processes

SAMPLE_S = 2.0


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB, from /proc/<pid>/smaps_rollup."""
    values = {"Rss:": 0.0, "Pss:": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, *rest = line.split()
            if name in values:
                values[name] = int(rest[0]) / 1024
    return values["Rss:"], values["Pss:"]


def sample(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    return {name: memory_mib(pid) for name, pid in pids.items()}


def summarise(samples: list[dict[str, tuple[float, float]]]) -> dict[str, Any]:
    """Median and largest of the group's sums over a phase (RSS and PSS, with and without the broker), and
    each process's median RSS and PSS."""

    def sums(which: int, broker: bool) -> list[float]:
        return [sum(v[which] for n, v in s.items() if broker or n != "kafka") for s in samples]

    out: dict[str, Any] = {"samples": len(samples)}
    for label, which in (("rss", 0), ("pss", 1)):
        for suffix, broker in (("", False), ("_with_broker", True)):
            values = sums(which, broker)
            out[f"{label}_mib{suffix}"] = round(statistics.median(values), 1)
            out[f"{label}_mib{suffix}_max"] = round(max(values), 1)
    names = sorted({n for s in samples for n in s})
    out["by_process"] = {
        n: [round(statistics.median(s[n][i] for s in samples if n in s), 1) for i in (0, 1)] for n in names
    }
    return out


async def sampled(pids: dict[str, int], seconds: float) -> list[dict[str, tuple[float, float]]]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(sample(pids))
        await asyncio.sleep(SAMPLE_S)
    return samples


async def one_layout(layout: str, args: argparse.Namespace) -> dict[str, Any]:
    specs = platform_processes(
        port_offset=INFRA.port_offset, extra_env={"KAFKA_BOOTSTRAP_SERVERS": INFRA.kafka}, layout=layout
    )
    for spec in specs:
        if spec.name == "gateway":
            spec.env.update(UNTHROTTLED_ENV)
    platform = Platform(specs, log_dir=INFRA.state_dir / f"logs-{layout}", base_env=INFRA.env())
    result: dict[str, Any] = {"layout": layout, "processes": len(specs)}
    try:
        platform.start_all()
        await asyncio.to_thread(platform.wait_ready, None, 240)
        key = await asyncio.to_thread(create_key)
        key_headers = {"X-API-Key": key, "content-type": "application/json"}
        connector = aiohttp.TCPConnector(limit=500, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            api = f"{INFRA.gateway}/api/v1"
            customers = await create_known_customers(http, api, "Layout", args.customers)
            await open_loop(http, f"{api}/interactions", key_headers, customers, args.rate, args.warmup)
            with contextlib.suppress(TimeoutError):
                await drained(http, 120)
            pids = group_pids(platform)
            result["idle"] = summarise(await sampled(pids, args.idle))
            result["load_before"] = os.getloadavg()[0]
            load = asyncio.create_task(
                open_loop(http, f"{api}/interactions", key_headers, customers, args.rate, args.seconds)
            )
            samples = await sampled(pids, args.seconds)
            phase = await load
            result["under_load"] = summarise(samples)
            result["load_after"] = os.getloadavg()[0]
            result["achieved_per_s"], result["by_status"] = phase["achieved_per_s"], phase["by_status"]
    finally:
        platform.stop_all()
    print(
        f"[{layout}] {result['processes']} processes; idle PSS {result['idle']['pss_mib']} MiB (RSS"
        f" {result['idle']['rss_mib']}), at {args.rate:g}/s PSS {result['under_load']['pss_mib']} MiB (RSS"
        f" {result['under_load']['rss_mib']}), broker apart;"
        f" load {result['load_before']:.1f}-{result['load_after']:.1f}",
        flush=True,
    )
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()}, "args": vars(args)}
    report["layouts"] = [await one_layout(layout, args) for layout in args.layouts.split(",")]
    report["load_after"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any]) -> None:
    args = report["args"]
    print(f"\nembedded default (SQLite), idle {args['idle']:g} s, then {args['rate']:g}/s for {args['seconds']:g} s")
    print("| layout | processes | phase | PSS MiB (max) | RSS MiB (max) | PSS with broker | RSS with broker |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in report["layouts"]:
        for phase in ("idle", "under_load"):
            m = r[phase]
            print(
                f"| {r['layout']} | {r['processes']} | {phase} | {m['pss_mib']} ({m['pss_mib_max']}) |"
                f" {m['rss_mib']} ({m['rss_mib_max']}) | {m['pss_mib_with_broker']} | {m['rss_mib_with_broker']} |"
            )
    print("\nper process, median at load (RSS / PSS MiB):")
    for r in report["layouts"]:
        cells = ", ".join(f"{n} {v[0]}/{v[1]}" for n, v in r["under_load"]["by_process"].items())
        print(f"  {r['layout']}: {cells}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layout_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="combined,consumer-apart", help="comma-separated CRM_LAYOUT values")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=INFRA.state_dir.parent / "bench-layout-memory.json")
    args = parser.parse_args(argv)
    unknown = set(args.layouts.split(",")) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout(s): {', '.join(sorted(unknown))}")
    report = on_fresh_local_kafka(lambda: run(args))
    write_report(report, args.json, print_report)


if __name__ == "__main__":
    main()
