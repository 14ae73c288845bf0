"""A transaction that lost a race (deadlock victim, serialization failure) is passing, like an unreachable
database: the API answers 503 with Retry-After and a consumer retries its batch; other database errors are not."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError

from servicekit.errors import is_transient
from servicekit.problems import install_problem_handlers


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: a driver error carrying PostgreSQL's SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _db_error(sqlstate: str | None, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return kind("UPDATE customer ...", None, _DriverError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_deadlock_victim_or_serialization_failure_is_transient(sqlstate: str) -> None:
    assert is_transient(_db_error(sqlstate))


@pytest.mark.parametrize("sqlstate", [None, "23505", "42P01", "22P02"])
def test_other_database_errors_are_not_transient(sqlstate: str | None) -> None:
    assert not is_transient(_db_error(sqlstate))
    assert not is_transient(_db_error(sqlstate, IntegrityError))


async def test_a_deadlocked_request_answers_503_with_retry_after_not_500() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/things")
    async def _things() -> None:
        raise _db_error("40P01")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/things")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["type"] == "urn:crm:problem:unavailable"
