"""The soak's statement-cache evidence: processes started through bench.memtrace, their probes read back,
and PostgreSQL's memory-context dumps grouped per database and round (bench.pgmemory)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.cacheprobe import TRIM_REQUEST
from bench.pgmemory import parse_contexts
from runner.launcher import ProcessSpec


def wrap(spec: ProcessSpec, out: Path, extra: list[str]) -> None:
    """Start that process as `python -m bench.memtrace --out OUT EXTRA services.x ...` instead."""
    module_at = spec.argv.index("-m") + 1
    spec.argv = [*spec.argv[:module_at], "bench.memtrace", "--out", str(out), *extra, *spec.argv[module_at:]]


async def ask_trim(probed: list[str], traced: Path, timeout_s: float = 60.0) -> None:
    """Ask each probed process for its last probe and a malloc_trim (once the stream has drained), and wait
    until each has answered or timeout_s has passed."""
    asked = [traced / name / TRIM_REQUEST for name in probed if (traced / name).is_dir()]
    for request in asked:
        request.touch()
    for _ in range(int(timeout_s * 2)):  # the probe looks for its request every second
        if not any(request.exists() for request in asked):
            return
        await asyncio.sleep(0.5)


def contexts_by_round(samples: list[dict[str, Any]], log: str) -> dict[str, list[dict[str, Any]]]:
    """Per database, per dump round (a sample that asked for one): its backends' dumps summed."""
    rounds = [(s["pg_dumped_at"], s["t_s"], s["pg_backends"]) for s in samples if "pg_dumped_at" in s]
    out: dict[str, dict[float, dict[str, Any]]] = defaultdict(dict)
    for pid, dumps in parse_contexts(log).items():
        for dump in dumps:
            asked = [r for r in rounds if r[0] - 1 <= dump["at"] and pid in r[2]]
            if not asked:
                continue
            _, t_s, backends = asked[-1]
            row = out[backends[pid]].setdefault(
                t_s, {"t_s": t_s, "backends": 0, "total_kib": 0.0, "cache_kib": 0.0, "plan_sources": 0, "plan_kib": 0.0}
            )
            row["backends"] += 1
            for key in ("total_kib", "cache_kib", "plan_sources", "plan_kib"):
                row[key] = round(row[key] + dump.get(key, 0), 1)
    return {db: [rows[t] for t in sorted(rows)] for db, rows in sorted(out.items())}


def probe_report(probed: list[str], traced: Path, server_log: Path, samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"probes": {}}
    for name in probed:
        with contextlib.suppress(FileNotFoundError):
            lines = (traced / name / "probes.jsonl").read_text().splitlines()
            out["probes"][name] = [json.loads(line) for line in lines]
    with contextlib.suppress(FileNotFoundError):
        out["pg_contexts"] = contexts_by_round(samples, server_log.read_text(errors="replace"))
    return out


def _mib(value: Any) -> str:
    return "" if value is None else f"{value}"


def print_probes(report: dict[str, Any]) -> None:
    for name, probes in report.get("probes", {}).items():
        print(f"\n{name}: statement caches over time")
        print(
            "| t s | RSS MiB | conns | prepared (per conn) | distinct | SQL KiB | asyncpg cache | to close | compiled |"
        )
        print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for p in probes:
            print(
                f"| {p['t_s']:.0f} | {p['rss_mib']} | {p.get('connections', '')} |"
                f" {sum(p.get('prepared_per_connection', []))} ({p.get('prepared_per_connection', [])}) |"
                f" {p.get('distinct_prepared', '')} | {p.get('prepared_sql_kib', '')} |"
                f" {p.get('asyncpg_stmt_cache', '')} | {p.get('asyncpg_to_close', '')} |"
                f" {p.get('compiled_cache', '')} |"
            )
        if probes and "shapes" in probes[-1]:
            print(f"  prepared at the end, by kind: {probes[-1]['shapes']}")
        print(f"\n{name}: where its memory is (MiB): glibc held / in use / free, pymalloc held / in live objects")
        print("| t s | RSS | anonymous | glibc held | in use | free | arenas | pymalloc held | in objects | max held |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in probes:
            print(
                f"| {p['t_s']:.0f} | {p['rss_mib']} | {_mib(p.get('anon_mib'))} | {_mib(p.get('heap_mib'))} |"
                f" {_mib(p.get('in_use_mib'))} | {_mib(p.get('heap_free_mib'))} | {_mib(p.get('arenas'))} |"
                f" {_mib(p.get('pymalloc_arenas_mib'))} | {_mib(p.get('pymalloc_in_use_mib'))} |"
                f" {_mib(p.get('pymalloc_arenas_max_mib'))} |"
            )
        trimmed = [p for p in probes if "trim_anon_before_mib" in p]
        if trimmed:
            t = trimmed[-1]
            print(
                f"  after the drain, malloc_trim(0): anonymous RSS {t['trim_anon_before_mib']} ->"
                f" {t['trim_anon_after_mib']} MiB"
            )
    for db, rows in report.get("pg_contexts", {}).items():
        print(f"\nPostgreSQL backends of {db}: memory contexts (KiB, all its backends together)")
        print("| t s | backends | total | CacheMemoryContext subtree | plan sources named | their KiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['t_s']:.0f} | {r['backends']} | {r['total_kib']:.0f} | {r['cache_kib']:.0f} |"
                f" {r['plan_sources']:.0f} | {r['plan_kib']:.0f} |"
            )


def print_pg_groups(series: list[dict[str, Any]]) -> None:
    """PostgreSQL's memory by group of server processes about once a minute: how many processes and their
    private memory together (the leak-relevant figure), and apart from it the shared buffers touched."""
    if not series or "pg_groups" not in series[-1]:
        return
    print("\nPostgreSQL by server process group, about once a minute: processes / private MiB (RssAnon)")
    print("| group | " + " | ".join(f"{s['t_s'] / 60:.0f}" for s in series) + " |")
    print("|---|" + "---:|" * len(series))
    for name in sorted({g for s in series for g in s.get("pg_groups", {})}):
        cells = []
        for s in series:
            group = s.get("pg_groups", {}).get(name)
            cells.append(f"{group['processes']:.0f} / {group['private_mib']:.1f}" if group else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "| shared memory touched, MiB (RssShmem, largest process; shared_buffers filling: a cache, not a leak) | "
        + " | ".join(f"{s.get('pg_shared_touched_mib', 0.0):.1f}" for s in series)
        + " |"
    )
