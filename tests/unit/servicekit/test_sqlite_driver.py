"""servicekit.sqlite_driver: a SQLite file's statements run in the event loop's thread, with aiosqlite's
interface, and a wait for another process's write lock leaves the event loop free."""

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from servicekit import sqlite
from servicekit.db import Database
from servicekit.sqlite import engine_options
from servicekit.sqlite_driver import InlineConnection


@pytest.fixture
async def database(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE rows (n INTEGER PRIMARY KEY, label TEXT NOT NULL)"))
    yield db
    await db.dispose()


def test_a_file_database_runs_inline_and_an_in_memory_one_keeps_aiosqlite(tmp_path: Path) -> None:
    assert "async_creator" in engine_options(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert engine_options("sqlite+aiosqlite:///:memory:") == {}
    assert engine_options("sqlite+aiosqlite://") == {}
    assert engine_options("sqlite+aiosqlite:///file:x?mode=memory&cache=shared&uri=true") == {}


async def test_statements_never_leave_the_event_loops_thread(database: Database) -> None:
    threads: set[int] = set()

    def record(_value: int) -> int:
        threads.add(threading.get_ident())
        return 1

    async with database.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, InlineConnection)
        raw.driver_connection._live().create_function("record", 1, record)
        await conn.execute(text("SELECT record(1)"))
    assert threads == {threading.get_ident()}


async def test_rows_written_read_back_and_rolled_back_as_with_aiosqlite(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(
            text("INSERT INTO rows (n, label) VALUES (:n, :label)"), [{"n": 1, "label": "a"}, {"n": 2, "label": "b"}]
        )
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n, label) VALUES (3, 'c')"))
            raise RuntimeError("the work failed")
    async with database.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT n, label FROM rows ORDER BY n"))).all()
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rows (n, label) VALUES (1, 'a')"))
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n, label) VALUES (1, 'again')"))


async def test_the_page_cache_and_memory_map_are_set_on_every_connection(database: Database) -> None:
    async with database.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA cache_size"))).scalar_one() == -sqlite.CACHE_KIB
        assert (await conn.execute(text("PRAGMA mmap_size"))).scalar_one() == sqlite.MMAP_BYTES
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 1  # NORMAL


async def test_waiting_for_another_processs_lock_leaves_the_event_loop_free(database: Database, tmp_path: Path) -> None:
    # Another process (here another connection outside the engine) holds the write lock.
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def write() -> None:
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n, label) VALUES (7, 'after the other')"))

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    # The loop kept turning while the write waited (blocked in SQLite's busy handler, it would not have
    # come back here before the write failed, and the ticker would not have run again).
    assert not writing.done()
    assert ticks >= 2
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writing, 5)
    ticking.cancel()
    async with database.engine.connect() as conn:
        assert (await conn.execute(text("SELECT label FROM rows WHERE n = 7"))).scalar_one() == "after the other"


async def test_another_processs_lock_held_past_the_timeout_fails_as_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LOCK_TIMEOUT_S", 0.2)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'held.db'}")
    other = sqlite3.connect(tmp_path / "held.db", isolation_level=None)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        other.execute("ROLLBACK")
        async with db.engine.begin() as conn:  # the failed wait handed the file on
            await conn.execute(text("INSERT INTO t (n) VALUES (2)"))
    finally:
        other.close()
        await db.dispose()


async def test_the_wal_is_checkpointed_off_the_loop_and_starts_over_instead_of_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "CHECKPOINT_EVERY_COMMITS", 5)
    made: list[sqlite.Checkpointer] = []
    real = sqlite.Checkpointer

    def recording(path: str, queue: sqlite.TransactionQueue | None) -> sqlite.Checkpointer:
        made.append(real(path, queue))
        return made[-1]

    monkeypatch.setattr(sqlite, "Checkpointer", recording)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        async with db.engine.begin() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one() == 0
            await conn.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
        for n in range(120):  # concurrent writers, as a service's requests, relay and consumer are
            await asyncio.gather(*(_insert(db, n * 3 + k) for k in range(3)))
        for _ in range(200):
            if not made[0]._running:
                break
            await asyncio.sleep(0.01)
        assert made[0].checkpoints >= 10
        await _insert(db, 10_000)  # the first writer after a complete checkpoint starts the WAL over
        other = sqlite3.connect(tmp_path / "wal.db")
        try:
            _busy, wal_frames, _copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert wal_frames < 60  # 361 transactions wrote far more frames than that
            assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 361
        finally:
            other.close()
    finally:
        made[0].close()
        await db.dispose()


async def _insert(db: Database, n: int) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO t (n, pad) VALUES (:n, :pad)"), {"n": n, "pad": "x" * 500})
