"""Shared request guards: NUL characters are located by field, and a concurrent change is a 409 problem."""

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.db import Database
from servicekit.problems import install_problem_handlers
from servicekit.validation import nul_fields, parameter_nul_fields


def test_every_string_and_key_holding_a_nul_is_named_in_validation_notation() -> None:
    document = {
        "name": "ok",
        "rows": [{"email": "a@b.c"}, {"email": "x\x00y", "tags": ["fine", "\x00"]}],
        "attributes": {"pl\x00an": "pro"},
    }

    assert sorted(nul_fields(document)) == ["attributes.pl\\u0000an", "rows[1].email", "rows[1].tags[1]"]


def test_a_document_without_nul_or_a_bare_string_with_one() -> None:
    assert list(nul_fields({"text": "a backslash-u0000 written out: \\u0000", "n": 3, "ok": None})) == []
    assert list(nul_fields("\x00")) == ["body"]


def test_path_and_query_parameters_holding_a_nul_are_named() -> None:
    fields = parameter_nul_fields({"customer_id": "c\x001"}, [("tag", "vip"), ("tag", "e\x00u"), ("q", "x")])

    assert fields == ["path.customer_id", "query.tag"]


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


@pytest.fixture
async def database(tmp_path: Path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'guards.db'}", source="/crm/test")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with db.transaction() as session:
        session.add(Row(id=1, name="first"))
    yield db
    await db.dispose()


async def test_an_update_that_a_concurrent_delete_overtook_is_a_409_conflict_problem(database: Database) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.patch("/rows/{row_id}")
    async def rename(row_id: int) -> dict[str, str]:
        async with database.sessions() as mine:
            row = await mine.get(Row, row_id)
            assert row is not None
            await mine.commit()  # (SQLite serialises writers; the row stays loaded)
            async with database.transaction() as theirs:  # another request removes it meanwhile
                await theirs.delete(await theirs.get(Row, row_id))
            row.name = "second"
            await mine.flush()  # UPDATE ... matches no row: SQLAlchemy's StaleDataError
            await mine.commit()
        return {"name": row.name}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.patch("/rows/1")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:crm:problem:conflict"
