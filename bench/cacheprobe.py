"""What a platform process keeps in its statement caches, sampled from inside it (bench.memtrace --probe-every).

Per asyncpg connection: the statements SQLAlchemy's asyncpg dialect keeps prepared (its LRU of
``prepared_statement_cache_size``), asyncpg's own statement cache and the statements waiting to be closed
on the server; per engine, SQLAlchemy's compiled-statement cache. Each prepared statement is also a plan
source in that connection's PostgreSQL backend, so the server holds as many.

And the allocators, which tell memory kept by live Python objects from memory freed but kept: glibc's
arenas (held from the system, in use, free but kept; how many), pymalloc's arenas (Python's small objects,
mmapped outside glibc's heap: held against in live objects), and the RSS split into anonymous memory and
file pages. On request (a file, see prober) malloc_trim shows how much glibc gives back.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import time
import weakref
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from xml.etree import ElementTree


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


MIB = 2**20


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
    except (OSError, AttributeError):
        return None
    return libc


def malloc_mib() -> dict[str, float]:
    """glibc's heap, all its arenas together, and its mmapped blocks: held from the system, in use, and held
    but free (memory freed that malloc kept); and how many arenas (empty off glibc)."""
    libc = _libc()
    if libc is None:
        return {}
    info = libc.mallinfo2()
    held, used = info.arena + info.hblkhd, info.uordblks + info.hblkhd
    out = {
        "heap_mib": round(held / MIB, 1),
        "in_use_mib": round(used / MIB, 1),
        "heap_free_mib": round(info.fordblks / MIB, 1),
        "mmapped_mib": round(info.hblkhd / MIB, 1),
    }
    return out | malloc_arenas(libc)


def parse_malloc_info(xml: str) -> dict[str, Any]:
    """From malloc_info's XML: the arenas (one per <heap>) and the system memory each holds, in MiB."""
    root = ElementTree.fromstring(xml)
    held = [
        int(system.get("size", "0"))
        for heap in root.iter("heap")
        for system in heap.iter("system")
        if system.get("type") == "current"
    ]
    return {"arenas": len(held), "arena_held_mib": [round(size / MIB, 1) for size in held]}


def malloc_arenas(libc: ctypes.CDLL) -> dict[str, Any]:
    """glibc's arenas through malloc_info, written to a memory stream (no file descriptor redirected)."""
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    try:
        libc.open_memstream.restype = ctypes.c_void_p
        stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        if not stream:
            return {}
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
        xml = ctypes.string_at(buf, size.value).decode()
    except (OSError, AttributeError, UnicodeDecodeError):
        return {}
    finally:
        if buf.value:
            libc.free(buf)
    try:
        return parse_malloc_info(xml)
    except ElementTree.ParseError:
        return {}


_PYMALLOC_LINES = {
    "arenas": re.compile(r"^(\d+) arenas \* (\d+) bytes/arena\s+=\s+([\d,]+)", re.M),
    "allocated": re.compile(r"^# bytes in allocated blocks\s+=\s+([\d,]+)", re.M),
    "highwater": re.compile(r"^# arenas highwater mark\s+=\s+([\d,]+)", re.M),
}


def parse_pymalloc(text: str) -> dict[str, float]:
    """From sys._debugmallocstats(): the bytes pymalloc's arenas hold (mmapped by Python, outside glibc's
    heap) against the bytes in live small objects, and the most arenas it ever held."""
    arenas = _PYMALLOC_LINES["arenas"].search(text)
    allocated = _PYMALLOC_LINES["allocated"].search(text)
    highwater = _PYMALLOC_LINES["highwater"].search(text)
    if arenas is None or allocated is None:
        return {}
    held = int(arenas.group(3).replace(",", ""))
    return {
        "pymalloc_arenas_mib": round(held / MIB, 1),
        "pymalloc_in_use_mib": round(int(allocated.group(1).replace(",", "")) / MIB, 1),
        "pymalloc_arenas_max_mib": round(
            int(highwater.group(1).replace(",", "")) * int(arenas.group(2)) / MIB if highwater else 0.0, 1
        ),
    }


def pymalloc_mib() -> dict[str, float]:
    """pymalloc's arenas now (call in the event loop's thread: the call writes to file descriptor 2, which is
    pointed at a temporary file meanwhile; the services log to stdout)."""
    debugmallocstats = getattr(sys, "_debugmallocstats", None)
    if debugmallocstats is None:
        return {}
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        return parse_pymalloc(f.read().decode(errors="replace"))


def anon_mib(status: str) -> dict[str, float]:
    """RSS split into anonymous memory (heaps, arenas) and file pages (code, libraries), from /proc/PID/status."""
    out = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[f"{key[3:].lower()}_mib"] = round(int(value.split()[0]) / 1024, 1)
    return out


def trim() -> dict[str, float]:
    """malloc_trim(0): glibc gives back every free page of its heaps. RSS before and after tells how much of
    it was memory freed but kept."""
    libc = _libc()
    if libc is None:
        return {}
    status = Path("/proc/self/status")
    before = anon_mib(status.read_text()).get("anon_mib", 0.0)
    libc.malloc_trim(0)
    after = anon_mib(status.read_text()).get("anon_mib", 0.0)
    return {"trim_anon_before_mib": before, "trim_anon_after_mib": after}


def shape(sql: str) -> str:
    """A statement's kind and table, e.g. 'INSERT INTO outbox' (its first words)."""
    return " ".join(sql.split()[:3])[:48]


_ENGINES: weakref.WeakSet[Any] = weakref.WeakSet()
# The pools' DBAPI (adapted asyncpg) connections by id, from opened to closed (they take no weak references).
_CONNECTIONS: dict[int, Any] = {}


def watch_engines() -> None:
    """Remember each engine that connects (call before the service is imported): a service freezes what
    start-up built (gc.freeze), and gc.get_objects() does not list frozen objects such as its engine."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    event.listen(Engine, "engine_connect", lambda connection: _ENGINES.add(connection.engine))
    event.listen(
        Pool, "connect", lambda dbapi_connection, _record: _CONNECTIONS.update({id(dbapi_connection): dbapi_connection})
    )
    for closed in ("close", "close_detached"):
        event.listen(Pool, closed, lambda connection, *_: _CONNECTIONS.pop(id(connection), None))


def caches() -> dict[str, Any]:
    """The statement caches of every live connection and engine in this process (call in its event loop)."""
    from asyncpg.connection import Connection
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
    from sqlalchemy.engine import Engine

    adapted, raw, engines = [], [], []
    for obj in gc.get_objects():
        if isinstance(obj, AsyncAdapt_asyncpg_connection):
            adapted.append(obj)
        elif isinstance(obj, Connection):
            raw.append(obj)
        elif isinstance(obj, Engine):
            engines.append(obj)
    # Those start-up opened are frozen (gc.freeze) and not listed: the ones watch_engines() saw too.
    engines += [e for e in _ENGINES if e not in engines]
    adapted += [
        c for c in list(_CONNECTIONS.values()) if isinstance(c, AsyncAdapt_asyncpg_connection) and c not in adapted
    ]
    raw += [a._connection for a in adapted if a._connection not in raw]
    prepared = [list(a._prepared_statement_cache or ()) for a in adapted]
    texts = [sql for keys in prepared for sql in keys]
    shapes = Counter(shape(sql) for sql in texts)
    return {
        "connections": len(raw),
        "prepared_per_connection": sorted((len(keys) for keys in prepared), reverse=True),
        "prepared_sql_kib": round(sum(len(sql) for sql in texts) / 1024, 1),
        "distinct_prepared": len(set(texts)),
        "asyncpg_stmt_cache": sum(len(c._stmt_cache) for c in raw),
        "asyncpg_to_close": sum(len(c._stmts_to_close) for c in raw),
        "engines": len(engines),
        "compiled_cache": sum(len(e._compiled_cache) for e in engines if e._compiled_cache is not None),
        "shapes": dict(shapes.most_common(8)),
    }


def loop_of_main_thread() -> asyncio.AbstractEventLoop | None:
    """The process's running event loop, found among the live objects (the probe runs in another thread)."""
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
            return obj
    return None


def _answer(done: Future[dict[str, Any]]) -> None:
    try:
        done.set_result(pymalloc_mib() | caches())
    except Exception as exc:  # a probe must not stop the process it watches
        done.set_result({"error": repr(exc)})


TRIM_REQUEST = "trim-request"  # a file in the probe's folder: trim once, write the result, remove the file


def probe_line(started: float, rss: Any, loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    """RSS (anonymous and file pages), glibc's arenas, and from the event loop's own thread (between its
    callbacks, so nothing changes while it is read) pymalloc's arenas and the statement caches."""
    line: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), "at": time.time(), "rss_mib": rss()}
    line |= anon_mib(Path("/proc/self/status").read_text()) | malloc_mib()
    if loop is not None:
        done: Future[dict[str, Any]] = Future()
        loop.call_soon_threadsafe(_answer, done)
        try:
            line |= done.result(timeout=30)
        except TimeoutError:
            line["error"] = "the event loop did not answer in 30 s"
    return line


def prober(out: Path, every_s: float, started: float, rss: Any) -> None:
    """Every every_s seconds, one line in out/probes.jsonl (probe_line). When out/trim-request appears (the
    soak asks once its stream has drained), one more line, then malloc_trim and the anonymous RSS before
    and after it: how much of the process's memory was freed but kept by glibc."""
    loop: asyncio.AbstractEventLoop | None = None
    next_at = time.monotonic() + every_s
    while True:
        time.sleep(1.0)
        trim_asked = (out / TRIM_REQUEST).exists()
        if time.monotonic() < next_at and not trim_asked:
            continue
        next_at = time.monotonic() + every_s
        loop = loop if loop is not None and loop.is_running() else loop_of_main_thread()
        line = probe_line(started, rss, loop)
        if trim_asked:
            line |= trim()
        with (out / "probes.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")
        if trim_asked:
            (out / TRIM_REQUEST).unlink(missing_ok=True)
