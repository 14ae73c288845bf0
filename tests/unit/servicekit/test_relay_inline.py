"""The relay's read and mark on an inline SQLite file's connection (servicekit.outbox.relay_sqlite) against
SQLAlchemy's execution of the same round: two copies of one outbox on two files, one relay on each path,
the same rounds; the statements sent (SQL text and bound values), the rows read (every value, and its
type) and the table afterwards must be the same."""

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, event, exc, insert, select, text

from servicekit.db import Database
from servicekit.outbox.relay import OutboxRelay
from servicekit.outbox.relay_sqlite import InlineRelayStatements
from servicekit.settings import ServiceSettings
from servicekit.tables import OUTBOX, add_plumbing_tables

START = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass
class Side:
    database: Database
    relay: OutboxRelay
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def outbox_rows(count: int) -> list[dict[str, Any]]:
    """Rows as the writer leaves them: keys or none, headers of several shapes, times with and without
    microseconds."""
    return [
        {
            "topic": f"crm.t{n % 3}.v1",
            "key": None if n % 4 == 0 else f"cust-{n % 7}",
            "payload": bytes([n % 256]) * (n + 1),
            "headers": [["ce_type", f"t.{n}"], ["ce_id", f"id-{n}"]] if n % 5 else [],
            "event_id": f"e-{n}",
            "created_at": START + timedelta(seconds=n, microseconds=0 if n % 2 else 7),
        }
        for n in range(count)
    ]


@pytest.fixture
async def sides(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    """(SQLAlchemy's path, the inline path), each on its own copy of one file of 40 unpublished rows."""
    first = tmp_path / "old.db"
    seed = Database(f"sqlite+aiosqlite:///{first}")
    async with seed.engine.begin() as conn:
        metadata = MetaData()
        add_plumbing_tables(metadata)
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(OUTBOX), outbox_rows(40))
    await seed.dispose()
    shutil.copy(first, tmp_path / "new.db")
    made = []
    for name, inline in (("old.db", False), ("new.db", True)):
        database = Database(f"sqlite+aiosqlite:///{tmp_path / name}")
        relay = OutboxRelay(database, ServiceSettings(name="test", database_url=database.url, relay_batch_size=16))
        assert (relay._inline is not None) is True  # a file: the inline path is chosen by default
        if not inline:
            relay._inline = None
        side = Side(database, relay)

        def record(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, _many: bool, side: Side = side) -> None:
            side.statements.append((sql, tuple(params)))

        event.listen(database.engine.sync_engine, "before_cursor_execute", record)
        made.append(side)
    yield made[0], made[1]
    for side in made:
        await side.database.dispose()


async def table(database: Database) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(select(OUTBOX).order_by(OUTBOX.c.id))]


def typed(rows: list[Any]) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


async def test_rounds_send_the_same_statements_read_the_same_rows_and_leave_the_same_table(
    sides: tuple[Side, Side],
) -> None:
    old, new = sides
    acked_at = START + timedelta(hours=1, microseconds=5)
    # A first read; marks of 16, 1 and 7 ids riding on the next reads; a mark by itself; reads past the end.
    rounds: list[tuple[list[int] | None, bool]] = [
        (None, True),
        (list(range(1, 17)), True),
        ([17], True),
        (list(range(18, 25)), True),
        (list(range(25, 33)), False),
        (None, True),
        (list(range(33, 41)), True),
        (None, True),
    ]
    for ids, read in rounds:
        results = []
        for side in (old, new):
            side.relay._acked = {"ids": ids, "acked_at": acked_at} if ids else {}
            if read:
                results.append(typed(await side.relay._mark_acked_and_read()))
            else:
                await side.relay.mark_acked()
                results.append([])
            assert side.relay._acked == {}
        assert results[0] == results[1]
    assert new.statements == old.statements
    assert [sql.split()[0] for sql, _ in new.statements].count("UPDATE") == 5
    assert await table(new.database) == await table(old.database)
    assert all(row[7] is not None for row in await table(new.database))


async def test_the_read_gives_the_rows_as_sqlalchemy_does_with_no_listener_on_the_engine(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with database.engine.begin() as conn:
            metadata = MetaData()
            add_plumbing_tables(metadata)
            await conn.run_sync(metadata.create_all)
            await conn.execute(insert(OUTBOX), outbox_rows(5))
        relay = OutboxRelay(database, ServiceSettings(name="test", database_url=database.url))
        inline = relay._inline
        assert isinstance(inline, InlineRelayStatements) and not inline.engine.dispatch.before_cursor_execute
        rows = await relay._mark_acked_and_read()
        relay._inline = None
        expected = await relay._mark_acked_and_read()
        assert typed(rows) == typed(expected)
        assert [row.key for row in rows] == [None, "cust-1", "cust-2", "cust-3", None]
        assert rows[1].headers == [["ce_type", "t.1"], ["ce_id", "id-1"]]
        # SQLite keeps no zone: naive, as SQLAlchemy gives it (the relay reads it as UTC).
        assert rows[0].created_at == (START + timedelta(microseconds=7)).replace(tzinfo=None)
    finally:
        await database.dispose()


async def test_a_failing_round_raises_sqlalchemys_error_and_leaves_the_file_free(sides: tuple[Side, Side]) -> None:
    old, new = sides
    errors = []
    for side in (old, new):
        async with side.database.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
        side.relay._acked = {"ids": [1, 2], "acked_at": START}
        with pytest.raises(exc.OperationalError) as failed:
            await side.relay._mark_acked_and_read()
        errors.append((type(failed.value), str(failed.value.orig)))
        # Rolled back and handed on: the next transaction on the file begins at once.
        async with side.database.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
        side.relay._acked = {"ids": [1, 2], "acked_at": START}
        assert len(await side.relay._mark_acked_and_read()) == 16
    assert errors[0] == errors[1]
    assert await table(new.database) == await table(old.database)
