"""servicekit.driver: which engines and statements may run on the driver (running them: the e2e tests
tests/e2e/test_interaction_driver_path.py, on PostgreSQL)."""

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.driver import DriverStatement, usable

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
