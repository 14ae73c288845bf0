"""PostgreSQL's memory per database during a bench run: each client backend's private memory, and on request
its memory contexts (``pg_log_backend_memory_contexts``, PostgreSQL 14+) written to the server log and read
back here: the whole backend and its cache subtree (CacheMemoryContext: catalogue caches and the plan
sources of the statements that connection keeps prepared)."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.infra import Infra

_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+) \[(\d+)\] (?:\S+ )?LOG:  (.*)$")
_LEVEL = re.compile(r"^level: (\d+); (.*?): (\d+) total in")
_MORE = re.compile(r"^level: (\d+); (\d+) more child contexts containing (\d+) total")
_GRAND = re.compile(r"^Grand total: (\d+) bytes")


def private_mib(pid: int) -> float:
    """Memory a process holds for itself (RssAnon: heap and stacks, not shared or file pages), in MiB."""
    return resident_mib(Path(f"/proc/{pid}/status").read_text())["anon"]


def resident_mib(status: str) -> dict[str, float]:
    """A /proc/<pid>/status text's resident memory by kind, in MiB: anon (RssAnon, the process's own heap,
    the figure that shows a leak) and shmem (RssShmem, the pages of shared memory it has touched: for a
    PostgreSQL server process, the part of shared_buffers it has read or written, which grows towards
    shared_buffers as the cache fills and is the same memory in every process, so not a leak)."""
    out = {"anon": 0.0, "shmem": 0.0}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssShmem"):
            out[key[3:].lower()] = int(value.split()[0]) / 1024
    return out


async def server_processes(infra: Infra) -> dict[int, str]:
    """Every server process PostgreSQL lists (this monitor's own connection excepted), by pid, labelled:
    a client backend by its database and the application_name its client gave (each platform process
    names itself, servicekit.db), any other by its type (autovacuum worker, checkpointer, walwriter...)."""
    conn = await asyncpg.connect(host="127.0.0.1", port=infra.pg_port, user="postgres", database="postgres")
    try:
        rows = await conn.fetch(
            "SELECT pid, backend_type, datname, application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return {row["pid"]: label(row["backend_type"], row["datname"], row["application_name"]) for row in rows}


def label(backend_type: str, database: str | None, application: str | None) -> str:
    """How the soak groups a PostgreSQL process: 'db <database>: <application>' for a client backend."""
    if backend_type != "client backend" or database is None:
        return backend_type
    return f"db {database}: {application}" if application else f"db {database}"


def by_group(labels: dict[int, str], memory: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per label: how many processes, their private memory together and the most shared memory any of them
    touched (MiB); a process without a label (the postmaster) counts as 'postmaster', one that has exited
    since it was listed (no memory read) is left out."""
    out: dict[str, dict[str, float]] = {}
    for pid, mib in sorted(memory.items()):
        group = out.setdefault(
            labels.get(pid, "postmaster"), {"processes": 0, "private_mib": 0.0, "shmem_max_mib": 0.0}
        )
        group["processes"] += 1
        group["private_mib"] = round(group["private_mib"] + mib["anon"], 1)
        group["shmem_max_mib"] = round(max(group["shmem_max_mib"], mib["shmem"]), 1)
    return dict(sorted(out.items()))


async def client_backends(infra: Infra) -> dict[int, str]:
    """Each client backend's pid and the database it serves (this monitor's own excepted)."""
    conn = await asyncpg.connect(host="127.0.0.1", port=infra.pg_port, user="postgres", database="postgres")
    try:
        rows = await conn.fetch(
            "SELECT pid, datname FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname IS NOT NULL"
        )
    finally:
        await conn.close()
    return {row["pid"]: row["datname"] for row in rows}


def by_database(backends: dict[int, str]) -> dict[str, dict[str, float]]:
    """Per database: its backends and their private memory together, in MiB."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"backends": 0, "private_mib": 0.0})
    for pid, db in backends.items():
        with contextlib.suppress(OSError):  # a backend that has just exited
            out[db]["private_mib"] = round(out[db]["private_mib"] + private_mib(pid), 1)
            out[db]["backends"] += 1
    return dict(out)


async def log_contexts(infra: Infra, pids: list[int]) -> None:
    """Ask each backend to write its memory contexts to the server log (at its next interrupt check)."""
    conn = await asyncpg.connect(host="127.0.0.1", port=infra.pg_port, user="postgres", database="postgres")
    try:
        for pid in pids:
            await conn.execute("SELECT pg_log_backend_memory_contexts($1)", pid)
    finally:
        await conn.close()


def parse_contexts(log: str) -> dict[int, list[dict[str, Any]]]:
    """Per backend pid, each dump in the log: when, the grand total, the CacheMemoryContext subtree (its own
    and its children's totals, including the ones summarised as 'N more child contexts') and the plan
    sources it names (CachedPlanSource contexts; those beyond the 100 children a dump lists are not named)."""
    dumps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    current: dict[int, dict[str, Any]] = {}
    in_cache: dict[int, bool] = {}
    for line in log.splitlines():
        m = _PREFIX.match(line)
        if m is None:
            continue
        at, pid, message = m.group(1), int(m.group(2)), m.group(3)
        if message.startswith("logging memory contexts of PID"):
            current[pid] = {"at": _seconds(at), "cache_kib": 0.0, "plan_sources": 0, "plan_kib": 0.0}
            in_cache[pid] = False
            continue
        dump = current.get(pid)
        if dump is None:
            continue
        if (grand := _GRAND.match(message)) is not None:
            dump["total_kib"] = round(int(grand.group(1)) / 1024, 1)
            dump["cache_kib"] = round(dump["cache_kib"], 1)
            dump["plan_kib"] = round(dump["plan_kib"], 1)
            dumps[pid].append(dump)
            del current[pid]
        elif (level := _LEVEL.match(message)) is not None:
            depth, name, total = int(level.group(1)), level.group(2), int(level.group(3))
            if depth <= 1:
                in_cache[pid] = name == "CacheMemoryContext"
            if in_cache[pid]:
                dump["cache_kib"] += total / 1024
            if name.startswith("CachedPlan"):
                dump["plan_kib"] += total / 1024
                dump["plan_sources"] += name == "CachedPlanSource"
        elif (more := _MORE.match(message)) is not None and in_cache[pid] and int(more.group(1)) >= 2:
            dump["cache_kib"] += int(more.group(3)) / 1024
    return dict(dumps)


def _seconds(at: str) -> float:
    return datetime.strptime(at.rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f").timestamp()
