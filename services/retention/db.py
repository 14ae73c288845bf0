"""The retention service's table base and the column and field types its feature models share."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Boolean, Column, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from contracts.customer import VALUE_TIERS
from servicekit import types
from servicekit.clock import utc_now
from servicekit.pagination import MAX_PAGE
from servicekit.runtime_settings import add_settings_tables
from servicekit.tables import add_plumbing_tables
from servicekit.types import UtcDateTime


class RetentionTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = RetentionTable.metadata
add_plumbing_tables(metadata)
add_settings_tables(metadata)  # run-time settings overrides and their audit


def new_id() -> str:
    return str(uuid.uuid4())


def at_field(*, nullable: bool = False, index: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


def json_field(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def flag_field(default: bool) -> Any:
    return Field(default=default, sa_column=Column(Boolean, nullable=False, default=default))


UtcDatetime = types.UtcDatetime  # text only on input, UTC once read
Tier = Annotated[
    str,
    AfterValidator(lambda t: _one_of(t, VALUE_TIERS)),
    WithJsonSchema({"type": "string", "enum": list(VALUE_TIERS)}),
]


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"must be one of {list(allowed)}")
    return value


ReasonCode = Annotated[str, PydanticField(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


async def page(
    session: AsyncSession, query: Any, conditions: list[Any], table: Any, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """One page of the query's rows (at most MAX_PAGE) and the total count of rows matching the conditions."""
    total = (await session.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one()
    rows = (await session.execute(query.limit(min(limit, MAX_PAGE)).offset(offset))).scalars().all()
    return rows, total
