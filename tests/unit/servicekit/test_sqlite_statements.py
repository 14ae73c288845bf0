"""servicekit.sqlite_statements on a SQLite file: what is committed, what is rolled back, and errors at COMMIT
translated as SQLAlchemy translates them (the interaction post's comparison with the session's path:
tests/unit/interaction/test_inline_post.py)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, bindparam, exc, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from servicekit.db import Database
from servicekit.errors import is_transient
from servicekit.sqlite_statements import InlineInsert

METADATA = MetaData()
PARENTS = Table("parents", METADATA, Column("id", String, primary_key=True))
# Checked at COMMIT (deferred), so a missing parent fails the transaction's last step.
CHILDREN = Table(
    "children",
    METADATA,
    Column("id", String, primary_key=True),
    Column("parent_id", String, ForeignKey("parents.id", deferrable=True, initially="DEFERRED"), nullable=False),
)
NOTES = Table("notes", METADATA, Column("n", Integer, primary_key=True), Column("text", String, nullable=False))


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
        await conn.execute(insert(PARENTS), [{"id": "p-1"}])
    yield database
    await database.dispose()


def child_insert() -> Any:
    """A child written only if no child of that id exists (INSERT .. SELECT .. WHERE), RETURNING its id."""
    exists = select(CHILDREN.c.id).where(CHILDREN.c.id == bindparam("id")).exists()
    values = select(bindparam("id", type_=String), bindparam("parent_id", type_=String)).where(~exists)
    return insert(CHILDREN).from_select(["id", "parent_id"], values).returning(CHILDREN.c.id)


async def counts(database: Database) -> tuple[int, int]:
    async with database.engine.connect() as conn:
        children = (await conn.execute(select(func.count()).select_from(CHILDREN))).scalar_one()
        notes = (await conn.execute(select(func.count()).select_from(NOTES))).scalar_one()
    return children, notes


async def test_the_row_and_its_follow_up_rows_commit_together(database: Database) -> None:
    inline = InlineInsert(database.engine, child_insert(), insert(NOTES), ["text"])
    returned = await inline.run({"id": "c-1", "parent_id": "p-1"}, lambda: [{"text": "a"}, {"text": "b"}])
    assert returned == ("c-1",)
    assert await counts(database) == (1, 2)


async def test_a_statement_that_writes_nothing_is_rolled_back_and_asks_for_no_rows(database: Database) -> None:
    inline = InlineInsert(database.engine, child_insert(), insert(NOTES), ["text"])
    await inline.run({"id": "c-1", "parent_id": "p-1"}, lambda: [{"text": "a"}])
    asked: list[bool] = []
    returned = await inline.run({"id": "c-1", "parent_id": "p-1"}, lambda: asked.append(True) or [{"text": "b"}])
    assert returned is None and not asked
    assert await counts(database) == (1, 1)


async def test_an_error_at_commit_is_sqlalchemys_and_leaves_nothing_and_the_file_free(database: Database) -> None:
    inline = InlineInsert(database.engine, child_insert(), insert(NOTES), ["text"])
    with pytest.raises(exc.IntegrityError) as failed:
        await inline.run({"id": "c-1", "parent_id": "nobody"}, lambda: [{"text": "a"}])
    assert "FOREIGN KEY" in str(failed.value) and not is_transient(failed.value)
    assert await counts(database) == (0, 0)
    # The connection went back to the pool out of its transaction, and the file's queue was handed on.
    assert await inline.run({"id": "c-2", "parent_id": "p-1"}, lambda: [{"text": "b"}]) == ("c-2",)
    assert await counts(database) == (1, 1)


async def test_only_inline_file_engines_are_accepted(tmp_path: Path) -> None:
    in_memory = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(TypeError):
        InlineInsert(in_memory, child_insert(), insert(NOTES), ["text"])
    await in_memory.dispose()
