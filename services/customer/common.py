"""What every feature of the customer service shares: the table base (the service's own MetaData),
the UTC column and field types, and the per-caller form of an Idempotency-Key."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Column
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from servicekit import types
from servicekit.tables import add_plumbing_tables
from servicekit.types import UtcDateTime


class CustomerTable(SQLModel, registry=registry()):
    """Base of this service's tables: its own MetaData, so its migrations see only its tables."""


metadata = CustomerTable.metadata
add_plumbing_tables(metadata)

UtcDatetime = types.UtcDatetime  # text only on input, UTC once read


def dt_column(*, nullable: bool, index: bool = False) -> Any:
    return Column(UtcDateTime(), nullable=nullable, index=index)


def scoped_key(idempotency_key: str, caller: str) -> str:
    """The stored form of a caller's Idempotency-Key: keys are per caller, so another caller sending the
    same key (keys are often guessable) neither replays nor blocks this one's request."""
    if not caller:
        return idempotency_key  # no gateway in front (tests, local debugging): one caller
    return "c1:" + hashlib.sha256(f"{caller}\n{idempotency_key}".encode()).hexdigest()
