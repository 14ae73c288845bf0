"""What a platform process keeps in its statement caches, sampled from inside it (bench.memtrace --probe-every).

Per asyncpg connection: the statements SQLAlchemy's asyncpg dialect keeps prepared (its LRU of
``prepared_statement_cache_size``), asyncpg's own statement cache and the statements waiting to be closed
on the server; per engine, SQLAlchemy's compiled-statement cache; and glibc's heap (what malloc holds from
the system against what is in use), which tells a Python leak from memory freed but kept. Each prepared
statement is also a plan source in that connection's PostgreSQL backend, so the server holds as many.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import time
import weakref
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def malloc_mib() -> dict[str, float]:
    """glibc's main heap and mmapped blocks: held from the system, and in use (empty off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    mib = 2**20
    held, used = info.arena + info.hblkhd, info.uordblks + info.hblkhd
    return {"heap_mib": round(held / mib, 1), "in_use_mib": round(used / mib, 1)}


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
        done.set_result(caches())
    except Exception as exc:  # a probe must not stop the process it watches
        done.set_result({"error": repr(exc)})


def prober(out: Path, every_s: float, started: float, rss: Any) -> None:
    """Every every_s seconds, one line in out/probes.jsonl: RSS, glibc's heap and the statement caches
    (read in the event loop's own thread, between its callbacks, so no cache changes while it is read)."""
    loop: asyncio.AbstractEventLoop | None = None
    while True:
        time.sleep(every_s)
        loop = loop if loop is not None and loop.is_running() else loop_of_main_thread()
        line: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), "at": time.time(), "rss_mib": rss()}
        line |= malloc_mib()
        if loop is not None:
            done: Future[dict[str, Any]] = Future()
            loop.call_soon_threadsafe(_answer, done)
            try:
                line |= done.result(timeout=30)
            except TimeoutError:
                line["error"] = "the event loop did not answer in 30 s"
        with (out / "probes.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")
