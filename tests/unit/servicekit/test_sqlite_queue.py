"""servicekit.sqlite: a process's transactions on one SQLite file queue in the event loop, not in SQLite's
busy handler."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from servicekit import sqlite
from servicekit.db import Database


@pytest.fixture
async def database(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}")
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE rows (n INTEGER NOT NULL)"))
    yield db
    await db.dispose()


async def count(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM rows"))).scalar_one())


async def test_concurrent_transactions_all_commit_one_after_another(database: Database) -> None:
    inside = 0
    most_inside = 0

    async def write(n: int) -> None:
        nonlocal inside, most_inside
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n) VALUES (:n)"), {"n": n})
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.002)  # holds the transaction across an await, as a request does
            inside -= 1

    await asyncio.gather(*(write(n) for n in range(40)))
    assert await count(database) == 40
    assert most_inside == 1


async def test_a_waiting_transaction_waits_in_the_event_loop_not_in_sqlite(database: Database) -> None:
    # SQLite's busy handler would sleep 1, 2, 5 ... 100 ms between tries in the connection's thread and miss
    # the moment the file frees; queued, the second BEGIN IMMEDIATE is sent only once the first committed.
    begins: list[str] = []
    event.listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: begins.append(statement) if statement == "BEGIN IMMEDIATE" else None,
    )
    holder = await database.engine.connect()
    await holder.begin()
    await holder.execute(text("INSERT INTO rows (n) VALUES (1)"))

    async def second() -> None:
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n) VALUES (2)"))

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert len(begins) == 1
    await holder.commit()
    await holder.close()
    await waiting
    assert len(begins) == 2
    assert await count(database) == 2


async def test_a_rolled_back_transaction_hands_the_file_on(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n) VALUES (1)"))
            raise RuntimeError("the work failed")
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rows (n) VALUES (2)"))
    assert await count(database) == 1


async def test_a_failed_statement_hands_the_file_on(database: Database) -> None:
    with pytest.raises(Exception, match="NOT NULL"):
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO rows (n) VALUES (NULL)"))
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rows (n) VALUES (3)"))
    assert await count(database) == 1


async def test_a_connection_closed_mid_transaction_hands_the_file_on(database: Database) -> None:
    conn = await database.engine.connect()
    await conn.begin()
    await conn.execute(text("INSERT INTO rows (n) VALUES (4)"))
    await conn.close()  # no commit: rolled back
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO rows (n) VALUES (5)"))
    assert await count(database) == 1


async def test_a_transaction_that_waits_too_long_fails_as_a_locked_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LOCK_TIMEOUT_S", 0.1)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}")
    try:
        holder = await db.engine.connect()
        await holder.begin()
        with pytest.raises(OperationalError, match="database is locked"):
            async with db.engine.begin() as conn:
                await conn.execute(text("SELECT 1"))
        await holder.close()
        async with db.engine.begin() as conn:  # the holder's close handed the file on
            await conn.execute(text("SELECT 1"))
    finally:
        await db.dispose()
