"""SQLite as the embedded default: WAL, and one transaction at a time per database file, queued in the event loop.

Every transaction starts with BEGIN IMMEDIATE (a deferred one that reads first and writes later fails at
once with SQLITE_BUSY when another connection wrote in between), so a file has one transaction at a time.
Left to SQLite, a second connection that asks for the lock sleeps in SQLite's busy handler (1, 2, 5 ... up to
100 ms a try, in its aiosqlite thread) and is not woken when the lock frees: under a steady write rate the
waits add up to hundreds of milliseconds. Here a process's transactions on one file queue on an asyncio
lock instead, taken before BEGIN IMMEDIATE and handed on as the holder's COMMIT or ROLLBACK goes out, so
the next one starts at once. busy_timeout still covers other processes on the same file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, exc, make_url, pool
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

from servicekit.sqlite_driver import INLINE_BUSY_TIMEOUT_MS, inline_creator

log = logging.getLogger("servicekit.sqlite")

LOCK_TIMEOUT_S = 30.0  # as busy_timeout: then the transaction fails as SQLite's own wait would
# Pages of the file each connection keeps in memory (negative: KiB): the hot tables of a service's file
# (outbox, inbox, replicas) stay cached across transactions instead of being read again.
CACHE_KIB = 16384
# Reads of the main file through a memory map instead of a read() per page (WAL pages still come from
# the WAL); writes are unchanged, so durability is as without it.
MMAP_BYTES = 256 * 1024 * 1024


# An inline engine's connections never checkpoint the WAL themselves (a checkpoint fsyncs the WAL and the
# file, milliseconds to a disk under load, with the event loop waiting): after this many commits a
# PASSIVE checkpoint runs on a connection of its own in a worker thread (SQLite's default is every 1,000
# WAL pages, a few hundred of the platform's transactions).
CHECKPOINT_EVERY_COMMITS = 200


class Checkpointer:
    """WAL checkpoints of one database file, in a worker thread, one at a time.

    The checkpoint holds the file's place in the process's transaction queue while it runs, so no
    transaction of this process appends to the WAL meanwhile: it copies every frame, and the next writer
    starts the WAL from the beginning again, as after SQLite's own checkpoint at COMMIT. (Run beside
    writers, a checkpoint never reaches the WAL's end and the WAL grows without bound.) Writers of the
    file wait for it as they waited for the checkpoint inside a COMMIT; the event loop does not."""

    def __init__(self, path: str, queue: TransactionQueue | None, every_commits: int | None = None) -> None:
        self.path = path
        self.queue = queue
        self.every_commits = CHECKPOINT_EVERY_COMMITS if every_commits is None else every_commits
        self.checkpoints = 0  # completed
        self._commits = 0
        self._running = False
        self._connection: sqlite3.Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def committed(self) -> None:
        """Count a commit; start a checkpoint when one is due and none runs."""
        self._commits += 1
        if self._commits < self.every_commits or self._running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a synchronous caller: the next commit in the loop starts it
        self._commits, self._running = 0, True
        task = loop.create_task(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            if self.queue is None:
                await asyncio.to_thread(self._checkpoint)
            else:
                async with self.queue.held():
                    await asyncio.to_thread(self._checkpoint)
            self.checkpoints += 1
        except Exception:  # the next due checkpoint tries again
            log.warning("WAL checkpoint failed", extra={"database": os.path.basename(self.path)}, exc_info=True)
        finally:
            self._running = False

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA synchronous=NORMAL")
        # PASSIVE: waits for nobody (another process's reader only leaves some frames for the next one).
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def engine_options(url: str) -> dict[str, Any]:
    """create_async_engine's options for a SQLite URL: a file database's connections run their calls in
    the event loop's thread (servicekit.sqlite_driver); in-memory ones (tests) keep aiosqlite."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:") or "?" in url:
        return {}
    return {"async_creator": inline_creator(database)}


class TransactionQueue:
    """One asyncio lock per event loop for a database file, held from BEGIN to COMMIT or ROLLBACK."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._held: dict[int, asyncio.Lock] = {}  # id of the DBAPI connection -> the lock it holds

    def acquire(self, dbapi_connection: Any) -> None:
        """Wait (in the event loop) for the file's lock; called from SQLAlchemy's greenlet before BEGIN."""
        if not in_greenlet():
            return  # a synchronous caller cannot wait in the loop: SQLite's busy handler queues it
        await_(self.acquire_in_loop(dbapi_connection))

    async def acquire_in_loop(self, dbapi_connection: Any) -> None:
        """acquire() for a caller in the event loop itself (servicekit.sqlite_statements)."""
        lock = self._loop_lock(asyncio.get_running_loop())
        try:
            # Free (the common case): taken at once, without a timer or a turn of the event loop.
            await (lock.acquire() if not lock.locked() else _acquire_within(lock, self.timeout_s))
        except TimeoutError as error:
            locked = sqlite3.OperationalError("database is locked")
            raise exc.OperationalError("BEGIN IMMEDIATE", None, locked) from error
        self._held[id(_raw(dbapi_connection))] = lock

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """The file's place in this loop's queue, for work that is not a transaction (a checkpoint)."""
        lock = self._loop_lock(asyncio.get_running_loop())
        async with lock:
            yield

    def _loop_lock(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def release(self, dbapi_connection: Any) -> None:
        """Hand the lock on, if this connection holds it (idempotent)."""
        lock = self._held.pop(id(_raw(dbapi_connection)), None)
        if lock is not None and lock.locked():
            lock.release()

    def holds(self, dbapi_connection: Any) -> bool:
        return id(_raw(dbapi_connection)) in self._held


async def _acquire_within(lock: asyncio.Lock, timeout_s: float) -> bool:
    async with asyncio.timeout(timeout_s):
        return await lock.acquire()


def _raw(connection: Any) -> Any:
    """The DBAPI connection under a pool's proxy (SQLAlchemy passes either, depending on the path)."""
    return getattr(connection, "dbapi_connection", None) or connection


@dataclass(frozen=True)
class InlineFile:
    """What a statement run on an inline engine's sqlite3 connection itself, outside SQLAlchemy's
    transaction, must take part in (servicekit.sqlite_statements): the file's transaction queue, and its
    checkpointer, told of each commit."""

    queue: TransactionQueue
    checkpointer: Checkpointer


_INLINE_FILES: weakref.WeakKeyDictionary[Engine, InlineFile] = weakref.WeakKeyDictionary()


def inline_file(engine: Engine) -> InlineFile | None:
    """The queue and checkpointer of an engine configured inline on a file database; None for any other."""
    return _INLINE_FILES.get(engine)


def configure_sqlite(engine: AsyncEngine, *, inline: bool = False) -> TransactionQueue | None:
    """WAL, BEGIN IMMEDIATE for every transaction, and (for a file database) the in-process queue.
    inline: the engine's connections run in the event loop's thread (engine_options).

    In-memory databases (tests) share one connection (StaticPool) and get no queue."""
    sync_engine = engine.sync_engine
    queue = TransactionQueue() if isinstance(sync_engine.pool, pool.QueuePool) else None
    busy_timeout_ms = INLINE_BUSY_TIMEOUT_MS if inline else int(LOCK_TIMEOUT_S * 1000)
    checkpointer = Checkpointer(str(engine.url.database), queue) if inline else None

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs the WAL at checkpoints, not at every COMMIT: a committed transaction
        # survives the process being killed (it is in the WAL, in the OS's cache); an OS crash or power
        # loss can lose the last commits before the next checkpoint (docs/performance/2026-12-07-embedded-4.md).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        if checkpointer is not None:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread does it
        cursor.close()

    def begin_immediate(conn: Any) -> None:
        if not inline or not in_greenlet():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        # Another process holds the write lock: wait for it with the event loop free, not in SQLite's
        # busy handler (which would block the loop), up to LOCK_TIMEOUT_S as busy_timeout would.
        deadline, pause = time.monotonic() + LOCK_TIMEOUT_S, 0.001
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except exc.OperationalError as error:
                if "locked" not in str(error.orig) or time.monotonic() > deadline:
                    raise
            await_(asyncio.sleep(pause))
            pause = min(pause * 2, 0.05)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if queue is None:
            begin_immediate(conn)
            return
        queue.acquire(conn.connection)
        try:
            begin_immediate(conn)
        except BaseException:
            queue.release(conn.connection)
            raise

    if queue is not None:
        if checkpointer is not None:
            _INLINE_FILES[sync_engine] = InlineFile(queue, checkpointer)
        _hand_on_at_end(sync_engine.dialect, queue, checkpointer)
        # A connection returned, invalidated or closed mid-transaction no longer holds the file.
        for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
            event.listen(sync_engine.pool, name, lambda dbapi_connection, *_: queue.release(dbapi_connection))
    return queue


def _hand_on_at_end(dialect: Any, queue: TransactionQueue, checkpointer: Checkpointer | None) -> None:
    """The lock is handed on as the COMMIT or ROLLBACK is sent to the connection's thread. The next
    transaction resumes on a later turn of the event loop, by which time that statement is under way (a
    WAL commit takes well under a millisecond; should its BEGIN IMMEDIATE still find the file locked, the
    busy handler's first 1-ms try covers it). Handing on only after the COMMIT's answer came back would
    add one more turn of the loop to every transaction, and under load a turn is the longest wait."""
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        queue.release(dbapi_connection)
        commit(dbapi_connection)
        if checkpointer is not None:
            checkpointer.committed()

    def do_rollback(dbapi_connection: Any) -> None:
        queue.release(dbapi_connection)
        rollback(dbapi_connection)

    # The dialect object is this engine's own (create_engine makes one per engine).
    dialect.do_commit, dialect.do_rollback = do_commit, do_rollback
