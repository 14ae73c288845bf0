from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Column
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, select

from servicekit.db import Database, held_for_commit, hold_until_commit, holds, insert_rows, update_at_commit
from servicekit.sql import (
    KEYS,
    assign,
    column_arrays,
    for_each_key,
    insert_from_arrays,
    insert_rows_from_arrays,
    new_row,
    update_rows,
)
from servicekit.tables import INBOX, table_of
from tests.statements import statements_sent


class _Base(SQLModel, registry=registry()):
    pass


_metadata = _Base.metadata


class _Row(_Base, table=True):
    id: int = Field(primary_key=True)
    risk: float = 0.0
    stage: str | None = None
    evidence: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite database with the _Row table."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'helpers.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
    yield db
    await db.dispose()


async def test_assigned_attributes_are_flushed_and_seen_by_the_row_and_its_pydantic_view(database: Database):
    async with database.transaction() as session:
        session.add(_Row(id=1))
    async with database.transaction() as session:
        row = (await session.execute(select(_Row))).scalar_one()
        assign(row, risk=0.75, stage="decline")
        assert (row.risk, row.stage) == (0.75, "decline")
        assert row.model_dump() == {"id": 1, "risk": 0.75, "stage": "decline", "evidence": []}
        assert row in session.dirty
    async with database.sessions() as session:
        stored = (await session.execute(select(_Row))).scalar_one()
        assert (stored.risk, stored.stage) == (0.75, "decline")


async def test_for_each_key_keeps_the_rows_whose_key_is_listed_and_the_query_conditions(database: Database):
    async with database.transaction() as session:
        session.add_all([_Row(id=1, stage="a"), _Row(id=2, stage="b"), _Row(id=3, stage="a")])
    async with database.sessions() as session:
        query = for_each_key(select(_Row.id).where(_Row.stage == "a"), _Row.id, postgres=False)
        assert list((await session.execute(query, {KEYS: [1, 2]})).scalars()) == [1]
        assert list((await session.execute(query, {KEYS: [3]})).scalars()) == [3]  # one statement, any keys


def test_for_each_key_on_postgres_returns_orm_rows_for_an_entity_query_and_columns_for_a_core_one():
    rows = for_each_key(select(_Row).with_for_update(), _Row.id, postgres=True)
    assert [d["type"] for d in rows.column_descriptions] == [_Row]
    assert "FOR UPDATE" in str(rows.compile(dialect=postgresql.dialect()))
    ids = for_each_key(select(INBOX.c.event_id), INBOX.c.event_id, postgres=True)
    assert [d["name"] for d in ids.column_descriptions] == ["event_id"]


async def test_update_rows_writes_each_rows_values_onto_the_row_with_its_key(database: Database):
    async with database.transaction() as session:
        session.add_all([_Row(id=1, stage="a"), _Row(id=2, stage="b"), _Row(id=3, stage="c")])
    table = table_of(_Row)
    rows = [
        {"id": 3, "risk": 0.3, "stage": None, "evidence": [{"name": "complaints"}]},
        {"id": 1, "risk": 0.1, "stage": "z", "evidence": ["e-1"]},
        {"id": 9, "risk": 1.0, "stage": "x", "evidence": []},  # no such row: nothing written
    ]
    async with database.transaction() as session:
        await session.run_sync(lambda s: update_rows(s, table, "id", rows))
    async with database.sessions() as session:
        stored = {r.id: (r.risk, r.stage, r.evidence) for r in (await session.execute(select(_Row))).scalars()}
    assert stored == {1: (0.1, "z", ["e-1"]), 2: (0.0, "b", []), 3: (0.3, None, [{"name": "complaints"}])}


async def test_update_rows_keeps_the_stored_value_of_a_column_a_row_leaves_out_in_one_statement(database: Database):
    async with database.transaction() as session:
        session.add_all([_Row(id=1, stage="a", evidence=["old"]), _Row(id=2, stage="b", evidence=["kept"])])
    rows = [{"id": 1, "stage": None, "evidence": ["new"]}, {"id": 2, "risk": 0.5}]
    with statements_sent(database.engine.sync_engine, "UPDATE") as updates:
        async with database.transaction() as session:
            await session.run_sync(lambda s: update_rows(s, table_of(_Row), "id", rows))
    assert len(updates) == 1
    async with database.sessions() as session:
        stored = {r.id: (r.risk, r.stage, r.evidence) for r in (await session.execute(select(_Row))).scalars()}
    assert stored == {1: (0.0, None, ["new"]), 2: (0.5, "b", ["kept"])}


async def test_json_columns_store_numpy_scalars_and_non_string_keys_as_standard_json(database: Database):
    import numpy as np
    from sqlalchemy import Integer, MetaData, Table, text

    documents = Table("documents", MetaData(), Column("id", Integer, primary_key=True), Column("body", JSON))
    async with database.engine.begin() as conn:
        await conn.run_sync(documents.metadata.create_all)
        body = {"fit": np.float64(0.25), 7: [np.int64(3)], "ok": True}
        await conn.execute(documents.insert(), {"id": 1, "body": body})
        raw = (await conn.execute(text("SELECT body FROM documents"))).scalar_one()
        body = (await conn.execute(select(documents.c.body))).scalar_one()
    assert raw == '{"fit":0.25,"7":[3],"ok":true}'
    assert body == {"fit": 0.25, "7": [3], "ok": True}


async def test_update_at_commit_shows_values_at_once_and_writes_one_statement_per_table(
    database: Database,
):
    async with database.transaction() as session:
        session.add_all([_Row(id=1, stage="a"), _Row(id=2, stage="b"), _Row(id=4, stage="d")])
    with statements_sent(database.engine.sync_engine, "UPDATE") as updates:
        async with database.transaction() as session:
            one, two, four = sorted((await session.execute(select(_Row))).scalars(), key=lambda r: r.id)
            update_at_commit(session, one, risk=0.5)
            update_at_commit(session, four, stage="e", risk=0.75)  # the same columns as row 1: the same statement
            update_at_commit(session, two, stage="z", evidence=["e-1"])
            update_at_commit(session, one, stage="y")  # the same row again, other columns
            update_at_commit(session, two, risk=0.25)
            new = _Row(id=3)
            session.add(new)
            update_at_commit(session, new, stage="n")  # not stored yet: its INSERT carries the value
            assert (one.risk, one.stage, two.stage) == (0.5, "y", "z")
            assert not session.dirty  # nothing for the ORM to flush row by row
            await session.flush()
            assert updates == []  # held until commit
    # {risk, stage} for rows 1 and 4 and {risk, stage, evidence} for row 2, in one statement
    assert len(updates) == 1
    async with database.sessions() as session:
        stored = {r.id: (r.risk, r.stage, r.evidence) for r in (await session.execute(select(_Row))).scalars()}
    assert stored == {1: (0.5, "y", []), 2: (0.25, "z", ["e-1"]), 3: (0.0, "n", []), 4: (0.75, "e", [])}


async def test_update_at_commit_writes_nothing_when_the_transaction_rolls_back(database: Database):
    async with database.transaction() as session:
        session.add(_Row(id=1, stage="a"))
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            row = (await session.execute(select(_Row))).scalar_one()
            update_at_commit(session, row, stage="lost")
            raise RuntimeError("the batch failed")
    async with database.sessions() as session:
        assert (await session.execute(select(_Row.stage))).scalar_one() == "a"


async def test_rows_held_for_commit_live_on_the_sessions_typed_state_not_in_its_info(database: Database):
    table = _Row.__table__  # type: ignore[attr-defined]
    async with database.transaction() as session:
        info_before = dict(session.info)
        hold_until_commit(session, "rows", [{"id": 7, "risk": 0.0, "evidence": []}], insert_rows(table))
        assert holds(session, "rows") and not holds(session, "other")
        assert list(held_for_commit(session).rows) == ["rows"]
        assert dict(session.info) == info_before  # only the database's own settings (source, dialect)
    async with database.sessions() as session:
        assert [r.id for r in (await session.execute(select(_Row))).scalars()] == [7]
        assert holds(session, "rows") is False  # a new session holds nothing


async def test_a_session_not_made_by_a_database_cannot_hold_rows(database: Database):
    async with AsyncSession(database.engine) as session:
        with pytest.raises(TypeError, match=r"servicekit\.db\.Database"):
            hold_until_commit(session, "rows", [], insert_rows(_Row.__table__))  # type: ignore[attr-defined]


def test_table_of_names_a_model_without_a_table() -> None:
    class NotATable:
        pass

    assert table_of(_Row).name == _Row.__tablename__
    with pytest.raises(TypeError, match="NotATable"):
        table_of(NotATable)


async def test_new_row_is_the_constructors_row_and_its_insert_carries_every_value(database: Database):
    built, made = _Row(id=1, stage="a", evidence=["e"]), new_row(_Row, id=2, stage="a", evidence=["e"])
    assert made.model_dump() == {**built.model_dump(), "id": 2}
    assert made.model_fields_set == built.model_fields_set
    async with database.transaction() as session:
        session.add_all([made, new_row(_Row, id=3)])
        update_at_commit(session, made, risk=0.5)  # still new: its INSERT takes the value
    async with database.sessions() as session:
        stored = {r.id: (r.risk, r.stage, r.evidence) for r in (await session.execute(select(_Row))).scalars()}
    assert stored == {2: (0.5, "a", ["e"]), 3: (0.0, None, [])}


def test_insert_from_arrays_is_one_sql_text_for_any_number_of_rows_with_a_parameter_per_column() -> None:
    names = ("consumer", "event_id", "event_type", "outcome", "handled_at")
    statement = insert_from_arrays(INBOX, names).on_conflict_do_nothing().returning(INBOX.c.event_id)
    rows = [{"consumer": "g", "event_id": str(i), "event_type": "t", "outcome": "handled"} for i in range(300)]
    few, many = column_arrays(INBOX, names, rows[:2]), column_arrays(INBOX, names, rows)
    # The text is compiled from the statement alone; only the arrays' lengths differ between batches.
    compiled = statement.compile(dialect=postgresql.dialect())
    assert set(compiled.params) == {f"_{n}" for n in names}
    assert "unnest" in str(compiled) and "WITH ORDINALITY" in str(compiled) and "ORDER BY" in str(compiled)
    assert few["_event_id"] == ["0", "1"] and many["_event_id"] == [str(i) for i in range(300)]
    assert many["_handled_at"] == [None] * 300  # a column a row leaves out is bound as NULL


def test_column_arrays_bind_a_json_columns_values_as_json_texts_and_none_as_null() -> None:
    table = table_of(_Row)
    arrays = column_arrays(table, ("id", "evidence"), [{"id": 1, "evidence": [{"a": 1}]}, {"id": 2, "evidence": None}])
    assert arrays == {"_id": [1, 2], "_evidence": ['[{"a":1}]', None]}
    compiled = str(insert_from_arrays(table, ("id", "evidence")).compile(dialect=postgresql.dialect()))
    assert "CAST(given.evidence AS JSON)" in compiled


async def test_insert_from_arrays_skips_taken_keys_and_returns_what_it_inserted(database: Database):
    async with database.transaction() as session:
        first = await insert_rows_from_arrays(
            session, _Row.__table__, [{"id": 1, "risk": 0.5, "stage": "a", "evidence": []}]
        )
        rows = [{"id": i, "risk": i / 10, "stage": None, "evidence": [i]} for i in range(1, 1200)]
        inserted = await insert_rows_from_arrays(session, _Row.__table__, rows, skip_conflicts_on="id", returning="id")
    assert first == [] and sorted(inserted) == list(range(2, 1200))
    async with database.sessions() as session:
        stored = {r.id: r for r in (await session.execute(select(_Row))).scalars()}
    assert len(stored) == 1199 and stored[1].stage == "a" and stored[7].evidence == [7]


def test_insert_from_arrays_on_postgres_is_one_insert_from_unnest_whatever_the_row_count():
    statement = insert_from_arrays(_Row.__table__, ("id", "risk", "stage", "evidence"))
    statement = statement.on_conflict_do_nothing(index_elements=["id"]).returning(_Row.__table__.c.id)
    sql = str(statement.compile(dialect=postgresql.dialect()))
    assert "FROM unnest(" in sql and "ON CONFLICT (id) DO NOTHING RETURNING" in sql
    assert "CAST(given.evidence AS JSON)" in sql
