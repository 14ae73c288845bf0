"""servicekit.driver: which engines and statements may run on the driver, and when a pool's check-out
needs no greenlet (running them: the e2e tests tests/e2e/test_interaction_driver_path.py, on PostgreSQL)."""

import time
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, event, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from servicekit.driver import RECYCLE_MARGIN_S, DriverStatement, ready_without_waiting, usable

TABLE = Table(
    "things",
    MetaData(),
    Column("id", String, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("at", DateTime(timezone=True), default=func.now()),
    Column("made", String, default=lambda: "python"),
)
POSTGRES = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # never connected to: compiling needs no server


async def test_only_asyncpg_engines_without_statement_logging_are_usable():
    engines = [
        create_async_engine(POSTGRES),
        create_async_engine(POSTGRES, echo=True),
        create_async_engine("sqlite+aiosqlite://"),
    ]
    assert [usable(engine) for engine in engines] == [True, False, False]
    with pytest.raises(TypeError):
        DriverStatement(engines[2], select(TABLE.c.id))
    for engine in engines:
        await engine.dispose()


async def test_statements_sqlalchemy_must_prepare_are_refused():
    engine = create_async_engine(POSTGRES)
    with pytest.raises(TypeError, match="Python-side defaults"):
        DriverStatement(engine, insert(TABLE).values(id=bindparam("id"), n=bindparam("n")))
    with pytest.raises(TypeError, match="expanding"):
        DriverStatement(engine, select(TABLE.c.id).where(TABLE.c.id.in_(bindparam("ids", expanding=True))))
    await engine.dispose()


async def test_arguments_follow_the_positional_order_with_the_statements_own_values():
    engine = create_async_engine(POSTGRES)
    statement = select(TABLE.c.id, func.pg_notify("channel", "")).where(
        TABLE.c.n == bindparam("n"), TABLE.c.id == bindparam("id")
    )
    compiled = DriverStatement(engine, statement)
    assert compiled.sql.count("$") == 4
    assert compiled.arguments({"id": "a", "n": 3}) == ["channel", "", 3, "a"]
    with pytest.raises(KeyError):
        compiled.arguments({"id": "a"})
    await engine.dispose()


class _Connection:
    """A DBAPI connection that needs nothing awaited (the pool only resets and closes it)."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def _pool(**options: Any) -> AsyncAdaptedQueuePool:
    return AsyncAdaptedQueuePool(_Connection, pool_size=3, max_overflow=0, **options)


def _idle(pool: AsyncAdaptedQueuePool, count: int) -> list[Any]:
    """count connections opened, then returned: their records, in the order they went back."""
    taken = [pool.connect() for _ in range(count)]
    records = [fairy._connection_record for fairy in taken]
    for fairy in taken:
        fairy.close()
    return records


async def test_an_idle_open_connection_is_handed_over_without_waiting():
    pool = _pool(recycle=1800)
    assert not ready_without_waiting(pool)  # nothing idle: a new connection would be opened
    (record,) = _idle(pool, 1)
    assert ready_without_waiting(pool)
    fairy = pool.connect()
    assert fairy._connection_record is record
    assert not ready_without_waiting(pool)  # the only connection is out
    fairy.close()


@pytest.mark.parametrize("use_lifo", [False, True])
async def test_the_connection_judged_is_the_one_the_queue_gives_next(use_lifo: bool):
    pool = _pool(use_lifo=use_lifo)
    first, second = _idle(pool, 2)
    following, other = (second, first) if use_lifo else (first, second)
    other.invalidate()  # only the one not given next is unusable
    assert ready_without_waiting(pool)
    fairy = pool.connect()
    assert fairy._connection_record is following
    fairy.close()
    following.invalidate()
    assert not ready_without_waiting(pool)


async def test_a_connection_due_for_replacement_goes_through_the_greenlet():
    pool = _pool(recycle=1800)
    (record,) = _idle(pool, 1)
    now = record.starttime
    assert ready_without_waiting(pool, now=now + 1800 - RECYCLE_MARGIN_S)
    assert not ready_without_waiting(pool, now=now + 1800 - RECYCLE_MARGIN_S / 2)  # about to be recycled
    assert not ready_without_waiting(pool, now=now + 1801)
    record.starttime -= 1  # so that the invalidations below fall after it
    record.invalidate(soft=True)
    assert not ready_without_waiting(pool, now=now)
    pool = _pool()
    (record,) = _idle(pool, 1)
    record.starttime -= 1
    pool._invalidate_time = time.time()  # what a disconnect does to every older connection
    assert not ready_without_waiting(pool)


async def test_pools_that_may_await_on_checkout_always_go_through_the_greenlet():
    pinging = _pool(pre_ping=True)
    _idle(pinging, 1)
    listened = _pool()
    _idle(listened, 1)
    event.listen(listened, "checkout", lambda *_: None)
    plain = QueuePool(_Connection, pool_size=3)
    _idle(plain, 1)
    assert [ready_without_waiting(pool) for pool in (pinging, listened, plain)] == [False, False, False]
