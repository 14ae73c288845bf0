"""Recording and reading interactions: they change state and enqueue events, and never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, func
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from contracts.common import InteractionType
from servicekit.db import Database
from servicekit.outbox import insert_with_events, insert_with_events_on_driver
from servicekit.pagination import MAX_PAGE
from servicekit.sql import on_postgres
from servicekit.types import as_utc
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.store import (
    COLUMNS,
    Draft,
    events_of,
    get_interaction,
    new_draft,
    row_values,
    same_request,
    store_one,
    stored_external_ids,
)
from services.interaction.replica.directory import CustomerLookup
from services.interaction.replica.models import KnownCustomer
from services.interaction.replica.service import ensure_known_customer


async def record_interaction(
    *,
    session: AsyncSession,
    data: InteractionCreate,
    sla_hours: Mapping[str, float],
    lookup: CustomerLookup,
    common_case_tried: bool = False,
) -> tuple[Interaction | Draft, bool]:
    """Store an interaction and enqueue its events; a repeated external_id returns the stored one.

    Returns the interaction (its column values, when recorded now) and whether it was recorded now.
    common_case_tried: record_common_case ran and wrote nothing, so its statement is not sent again.
    """
    if not common_case_tried:
        interaction = new_draft(data, sla_hours)
        statement = _active_insert(on_postgres(session))
        if await insert_with_events(session, statement, row_values(interaction), *events_of(interaction)):
            # The common case, in one statement: the replica knows the customer, it is not erased, and the
            # external_id is new. Anything else wrote nothing and takes the checks below.
            return interaction, True
    stored: dict[str, tuple[str, str, str]] = {}
    if data.external_id is not None:
        # A retry is answered before the customer is checked (it may be erased or unreachable by now).
        stored = await stored_external_ids(session, [data.external_id])
        if data.external_id in stored:
            existing = await get_interaction(session=session, interaction_id=stored[data.external_id][0])
            return same_request(existing, data), False
    await ensure_known_customer(session=session, customer_id=data.customer_id, lookup=lookup)
    return await store_one(session, data, sla_hours, stored)


async def record_common_case(
    database: Database, data: InteractionCreate, sla_hours: Mapping[str, float]
) -> Draft | None:
    """record_interaction's common case without a session, on the driver's connection (see
    servicekit.driver.usable): the same statement with the same values (on PostgreSQL one statement, on
    SQLite the session's statements on the sqlite3 connection). The interaction when it was
    written; None when not (the customer is not known as active, or the external_id is stored): then
    record_interaction(common_case_tried=True) takes the checks."""
    interaction = new_draft(data, sla_hours)
    written = await insert_with_events_on_driver(
        database, _active_insert(database.is_postgres), row_values(interaction), *events_of(interaction)
    )
    return interaction if written is not None else None


_ACTIVE_INSERTS: dict[bool, Any] = {}  # on PostgreSQL? -> the statement, built once (its cache key too)


def _active_insert(postgres: bool) -> Any:
    """INSERT .. SELECT of one interaction, bound by column name, that writes only if the replica knows its
    customer as not erased and skips a stored external_id; RETURNING the id."""
    statement = _ACTIVE_INSERTS.get(postgres)
    if statement is None:
        table = Interaction.__table__  # type: ignore[attr-defined]
        columns = [table.c[name] for name in COLUMNS]
        replica = KnownCustomer.__table__  # type: ignore[attr-defined]
        active = exists().where(replica.c.customer_id == bindparam("customer_id"), replica.c.erased.is_(False))
        values = core_select(*[bindparam(c.name, type_=c.type) for c in columns]).where(active)
        statement = _ACTIVE_INSERTS[postgres] = (
            (postgresql_insert if postgres else sqlite_insert)(table)
            .from_select(columns, values)
            .on_conflict_do_nothing(index_elements=["external_id"])
            .returning(table.c.id)
        )
    return statement


async def list_customer_interactions(
    *,
    session: AsyncSession,
    customer_id: str,
    types: Sequence[InteractionType] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Interaction], int]:
    """A customer's timeline, newest first, occurred_at in [since, until); returns a page and the total."""
    conditions = [col(Interaction.customer_id) == customer_id]
    if types:
        conditions.append(col(Interaction.type).in_([t.value for t in types]))
    # Stored in UTC (SQLite compares the text), so bounds are converted to UTC too.
    if since is not None:
        conditions.append(col(Interaction.occurred_at) >= as_utc(since))
    if until is not None:
        conditions.append(col(Interaction.occurred_at) < as_utc(until))
    total = (await session.execute(select(func.count()).select_from(Interaction).where(*conditions))).scalar_one()
    page = await session.execute(
        select(Interaction)
        .where(*conditions)
        .order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
        .limit(min(limit, MAX_PAGE))
        .offset(offset)
    )
    return list(page.scalars()), total
