"""One path stores interactions, whether one is posted, many are imported or an ERP event arrives:
store_interactions. A single post is a batch of one whose outcome becomes the HTTP answer. Never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from contracts.common import InteractionType
from contracts.interaction import (
    ComplaintOpened,
    InteractionRecorded,
    SurveyAnswered,
    survey_dimension,
)
from servicekit.clock import utc_now
from servicekit.events.envelope import EventData
from servicekit.ids import uuid4_text
from servicekit.outbox import enqueue_many
from servicekit.problems import Problem, field_error, not_found
from servicekit.sql import chunks, insert_rows_from_arrays
from servicekit.turns import ROWS_PER_TURN, give_turn, in_turns
from services.interaction.complaints import sla
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.interactions.models import BulkRowStatus, Interaction, InteractionCreate


@dataclass(frozen=True)
class Stored:
    """What storing one row came to: `created` (interaction is the new one), `existing` (a repeat of
    interaction `id`), or `rejected` (its external_id already names interaction `id`, for another
    customer or type)."""

    status: BulkRowStatus
    id: str
    draft: Draft | None = None  # the created interaction's column values


async def store_one(
    session: AsyncSession,
    data: InteractionCreate,
    sla_hours: Mapping[str, float],
    stored: Mapping[str, tuple[str, str, str]] | None = None,
) -> tuple[Interaction, bool]:
    """store_interactions for one interaction of a known customer: it, and whether it is new."""
    outcome = (await store_interactions(session, {0: data}, sla_hours, stored))[0]
    if outcome.draft is not None:
        return Interaction(**vars(outcome.draft)), True
    # Another request stored this external_id since the caller looked: the same interaction, or a 409.
    return same_request(await get_interaction(session=session, interaction_id=outcome.id), data), False


async def store_interactions(
    session: AsyncSession,
    rows: Mapping[int, InteractionCreate],
    sla_hours: Mapping[str, float],
    stored: Mapping[str, tuple[str, str, str]] | None = None,
) -> dict[int, Stored]:
    """Insert interactions of known customers and enqueue their events; idempotent by external_id.

    A row whose external_id is stored already, or was carried by an earlier row, writes nothing: it
    is `existing` when it names the same customer and type, `rejected` when not. The insert skips
    external ids that a concurrent transaction stored first, and those rows are answered the same way.
    `stored`: the rows' stored external ids when the caller has just read them (saves reading again).
    """
    now = utc_now()
    if stored is None:
        stored = await stored_external_ids(session, sorted({d.external_id for d in rows.values() if d.external_id}))
    results: dict[int, Stored] = {}
    to_insert: list[tuple[int, Draft]] = []
    first_with: dict[str, int] = {}  # external_id -> the first row of this call that carries it
    repeats: list[tuple[int, int]] = []  # (row, the earlier row with its external_id)
    for done, index in enumerate(sorted(rows)):
        if done and done % ROWS_PER_TURN == 0:
            await give_turn()  # a bulk request's rows: the loop's other tasks run meanwhile
        data = rows[index]
        if data.external_id is not None:
            if data.external_id in stored:
                results[index] = _matching(data, *stored[data.external_id])
                continue
            if data.external_id in first_with:
                repeats.append((index, first_with[data.external_id]))
                continue
            first_with[data.external_id] = index
        to_insert.append((index, new_draft(data, sla_hours, now)))

    inserted = await _insert_interactions(session, [interaction for _, interaction in to_insert])
    created = [interaction for _, interaction in to_insert if interaction.id in inserted]
    # Another transaction stored these external ids between our check and our insert.
    lost_race = [i.external_id for _, i in to_insert if i.id not in inserted and i.external_id is not None]
    winners = await stored_external_ids(session, lost_race) if lost_race else {}
    for index, interaction in to_insert:
        if interaction.id in inserted:
            results[index] = Stored(BulkRowStatus.created, interaction.id, interaction)
        else:
            assert interaction.external_id is not None  # rows without one are never skipped
            results[index] = _matching(rows[index], *winners[interaction.external_id])
    for index, earlier in repeats:
        first = results[earlier]
        # A repeat of a rejected row shares its conflict; any other repeat must match the earlier row.
        results[index] = (
            first
            if first.status == BulkRowStatus.rejected
            else _matching(rows[index], first.id, rows[earlier].customer_id, rows[earlier].type)
        )

    # Enqueued a slice at a time (the envelopes' JSON is most of a bulk request's CPU after validation); a
    # caller that holds the outbox rows until commit (outbox.write_at_commit, as the bulk import does)
    # still writes them in one INSERT.
    async for _, part in in_turns(created):
        events = [event for interaction in part for event in events_of(interaction)]
        if events:
            await enqueue_many(session, events)
    return results


def _matching(data: InteractionCreate, other_id: str, customer_id: str, type_: str) -> Stored:
    """A row whose external_id already names interaction other_id: a repeat only for the same customer and type."""
    same = (customer_id, str(type_)) == (data.customer_id, data.type.value)
    return Stored(BulkRowStatus.existing if same else BulkRowStatus.rejected, other_id)


async def stored_external_ids(session: AsyncSession, external_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """external_id -> (id, customer_id, type) of interactions already stored."""
    found: dict[str, tuple[str, str, str]] = {}
    for chunk in chunks(list(external_ids)):
        rows = await session.execute(
            select(Interaction.external_id, Interaction.id, Interaction.customer_id, Interaction.type).where(
                col(Interaction.external_id).in_(chunk)
            )
        )
        for external_id, id_, customer_id, type_ in rows:
            found[external_id] = (id_, customer_id, str(type_))
    return found


COLUMNS = [c.name for c in Interaction.__table__.columns]  # type: ignore[attr-defined]


def row_values(interaction: Interaction | Draft) -> dict[str, Any]:
    """The interaction's column values, for Core INSERTs (no ORM flush)."""
    return {name: getattr(interaction, name) for name in COLUMNS}


async def _insert_interactions(session: AsyncSession, interactions: Sequence[Draft]) -> set[str]:
    """INSERTs that skip rows whose external_id exists (on PostgreSQL from an array per column, one
    statement per few thousand rows); returns the ids actually inserted."""
    if not interactions:
        return set()
    table = Interaction.__table__  # type: ignore[attr-defined]
    rows = [vars(i) for i in interactions]
    return set(await insert_rows_from_arrays(session, table, rows, skip_conflicts_on="external_id", returning="id"))


class Draft(SimpleNamespace):
    """An interaction's column values (every column of Interaction, as attributes), before its INSERT.

    Built without the ORM: a table model's constructor costs far more than the row's INSERT, and a
    bulk import needs only the values and the events they give.
    """


_DRAFT_DEFAULTS = dict.fromkeys(COLUMNS)


def new_draft(data: InteractionCreate, sla_hours: Mapping[str, float], now: datetime | None = None) -> Draft:
    """What new_interaction would build, as plain values."""
    values = {**_DRAFT_DEFAULTS, **data.__dict__, "id": uuid4_text(), "recorded_at": now or utc_now()}
    if data.type == InteractionType.complaint:
        assert data.severity is not None  # InteractionCreate requires it
        values["complaint_status"] = ComplaintStatus.open
        values["complaint_updated_at"] = values["recorded_at"]
        values["due_at"] = sla.due_at(data.occurred_at, data.severity, sla_hours)
    return Draft(**values)


def new_interaction(
    data: InteractionCreate, sla_hours: Mapping[str, float], now: datetime | None = None
) -> Interaction:
    interaction = Interaction(**data.model_dump(), recorded_at=now or utc_now())
    if data.type == InteractionType.complaint:
        assert data.severity is not None  # InteractionCreate requires it
        interaction.complaint_status = ComplaintStatus.open
        interaction.complaint_updated_at = interaction.recorded_at
        # The SLA runs from when the customer complained, not from when someone typed it in.
        interaction.due_at = sla.due_at(data.occurred_at, data.severity, sla_hours)
    return interaction


def same_request(existing: Interaction, data: InteractionCreate) -> Interaction:
    # A retry must describe the same interaction; an id reused for something else is a client bug.
    if existing.customer_id != data.customer_id or existing.type != data.type:
        raise Problem(
            409,
            "External id already used",
            f"external_id {data.external_id!r} already identifies another interaction ({existing.id}).",
            code="conflict",
            errors=[field_error("external_id", "already used for a different customer or type")],
            interaction_id=existing.id,
        )
    return existing


def events_of(interaction: Interaction | Draft) -> list[EventData]:
    events: list[EventData] = [
        InteractionRecorded(
            customer_id=interaction.customer_id,
            interaction_id=interaction.id,
            type=interaction.type,
            channel=interaction.channel,
            initiated_by=interaction.initiated_by,
            occurred_at=interaction.occurred_at,
            amount=interaction.amount,
            currency=interaction.currency,
            quantity=interaction.quantity,
            order_id=interaction.order_id,
            offer_code=interaction.offer_code,
            severity=interaction.severity,
            category=interaction.category,
            rating=interaction.rating,
            sentiment=interaction.sentiment,
        )
    ]
    if interaction.type == InteractionType.complaint:
        assert interaction.severity is not None and interaction.due_at is not None
        events.append(
            ComplaintOpened(
                customer_id=interaction.customer_id,
                complaint_id=interaction.id,
                category=interaction.category,
                severity=interaction.severity,
                opened_at=interaction.occurred_at,
                due_at=interaction.due_at,
            )
        )
    elif interaction.type == InteractionType.survey:
        assert interaction.survey is not None and interaction.score is not None
        events.append(
            SurveyAnswered(
                customer_id=interaction.customer_id,
                interaction_id=interaction.id,
                survey=interaction.survey,
                score=interaction.score,
                answered_at=interaction.occurred_at,
                dimension=survey_dimension(interaction.category),
            )
        )
    return events


async def get_interaction(*, session: AsyncSession, interaction_id: str) -> Interaction:
    interaction = await session.get(Interaction, interaction_id)
    if interaction is None:
        raise not_found("interaction", interaction_id, detail=f"No interaction with id {interaction_id}.")
    return interaction
