"""The read model's rows in a consumer batch: read once, written at commit.

A batch's orders, returns and answers touch few customers many times. The batch preload reads, with the
batch's other rows (services/retention/batch_rows.py), which of its event ids the read model holds already,
the customer_facts rows its events change (locked, in customer order) and the churns its late signals may
update, into `ReadModelBatch`, this transaction's typed state. New fact_events rows are held until commit
and inserted in one statement; customer_facts changes are written at commit (servicekit.db.update_at_commit,
new rows with one INSERT). Code that reads fact_events with SQL of its own in the transaction calls
store_new_fact_events first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from contracts.common import InteractionType
from contracts.customer import CustomerCreated, CustomerErased, CustomerUpdated
from contracts.interaction import ComplaintOpened, ComplaintOverdue, InteractionRecorded, SurveyAnswered
from servicekit.db import hold_until_commit, holds, take_held
from servicekit.events.envelope import Received
from servicekit.sql import on_postgres
from servicekit.unit_of_work import UnitOfWork
from services.retention.reports.models import (
    COMPETITOR_CATEGORIES,
    COMPETITOR_CONTACT,
    COMPLAINT,
    COMPLAINT_OVERDUE,
    INCIDENT,
    ORDER,
    PRICE_CATEGORIES,
    PRICE_CONTACT,
    RETURN,
    SIGNAL_KINDS,
    SURVEY,
    ChurnFact,
    CustomerFact,
    FactEvent,
)

# Every fact_events row held for commit carries these columns (one multi-row statement needs one shape).
FACT_COLUMNS = ("event_id", "customer_id", "kind", "category", "dimension", "score", "amount", "at")


@dataclass
class ReadModelBatch:
    """This transaction's read-model rows. An id absent from a dict was not read yet (ask per event)."""

    stored: set[str] = field(default_factory=set)  # event ids in fact_events, or held for it
    checked: set[str] = field(default_factory=set)  # event ids whose presence in fact_events is known
    facts: dict[str, CustomerFact | None] = field(default_factory=dict)  # locked; None: no row yet
    churns: dict[str, list[ChurnFact]] = field(default_factory=dict)  # every churn of the customer


def interaction_kind(data: InteractionRecorded) -> str | None:
    """The read model's kind of a recorded interaction; None when it keeps none."""
    category = (data.category or "").lower()
    match data.type:
        case InteractionType.purchase:
            return ORDER
        case InteractionType.return_:
            return RETURN
        case InteractionType.ticket:
            return INCIDENT
        case InteractionType.complaint | InteractionType.survey:
            return None  # complaint.opened and survey.answered carry those
    if category in PRICE_CATEGORIES:
        return PRICE_CONTACT
    if category in COMPETITOR_CATEGORIES:
        return COMPETITOR_CONTACT
    return None


_NEW_FACT_EVENTS = "retention.new_fact_events"


@cache
def _insert_fact_events(postgres: bool) -> Any:
    table = FactEvent.__table__  # type: ignore[attr-defined]
    insert = (postgresql.insert if postgres else sqlite.insert)(table)
    return insert.on_conflict_do_nothing(index_elements=[table.c.event_id])


def _write_fact_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(_insert_fact_events(on_postgres(session)), rows)


def hold_fact_event(uow: UnitOfWork, **row: Any) -> None:
    """Insert the fact_events row at commit, with the transaction's others in one statement."""
    full = {name: row.get(name) for name in FACT_COLUMNS}
    hold_until_commit(uow.session, _NEW_FACT_EVENTS, [full], _write_fact_events)
    uow.state(ReadModelBatch).stored.add(row["event_id"])


async def store_new_fact_events(session: AsyncSession) -> None:
    """Write this transaction's held fact_events rows now (before SQL of its own reads the table)."""
    rows = take_held(session.sync_session, _NEW_FACT_EVENTS) if holds(session, _NEW_FACT_EVENTS) else []
    if rows:
        await session.execute(_insert_fact_events(on_postgres(session)), rows)


async def is_new(uow: UnitOfWork, event_id: str) -> bool:
    """Whether the read model has not stored this event yet (a redelivery has); claims it if so."""
    state = uow.state(ReadModelBatch)
    if event_id in state.stored:
        return False
    if event_id not in state.checked:
        state.checked.add(event_id)
        await store_new_fact_events(uow.session)  # an earlier unit of work's, in this transaction
        query = select(FactEvent.event_id).where(FactEvent.event_id == event_id)
        if (await uow.session.execute(query)).first() is not None:
            state.stored.add(event_id)
            return False
    return True


_NEW_FACTS = "retention.new_customer_facts"


def _add_to_session(session: Session, rows: list[dict[str, Any]]) -> None:
    session.add_all([row["fact"] for row in rows])


def store_new_facts(session: AsyncSession) -> None:
    """Put this transaction's new customer_facts rows in the session now (the next flush inserts them)."""
    if holds(session, _NEW_FACTS):
        _add_to_session(session.sync_session, take_held(session.sync_session, _NEW_FACTS))


async def locked_stored_facts(uow: UnitOfWork, customer_id: str) -> CustomerFact | None:
    """The customer's facts for changing, locked once per transaction; None when it has none."""
    facts = uow.state(ReadModelBatch).facts
    if customer_id not in facts:
        store_new_facts(uow.session)
        facts[customer_id] = await uow.session.get(CustomerFact, customer_id, with_for_update=True)
    return facts[customer_id]


async def locked_facts(uow: UnitOfWork, customer_id: str) -> CustomerFact:
    """The customer's facts for changing: locked once per transaction, made (inserted at commit) if none."""
    found = await locked_stored_facts(uow, customer_id)
    if found is None:
        facts = uow.state(ReadModelBatch).facts
        found = facts[customer_id] = CustomerFact(customer_id=customer_id)
        hold_until_commit(uow.session, _NEW_FACTS, [{"fact": found}], _add_to_session)
    return found


async def known_facts(uow: UnitOfWork, customer_id: str) -> CustomerFact | None:
    """The customer's facts for reading: the transaction's locked ones if it has them."""
    facts = uow.state(ReadModelBatch).facts
    if customer_id in facts:
        return facts[customer_id]
    store_new_facts(uow.session)  # an earlier unit of work's, in this transaction
    return await uow.session.get(CustomerFact, customer_id)


async def churns_of(uow: UnitOfWork, customer_id: str) -> list[ChurnFact]:
    """Every churn recorded for the customer (the batch's preload read them, else one query)."""
    churns = uow.state(ReadModelBatch).churns
    if customer_id not in churns:
        query = select(ChurnFact).where(ChurnFact.customer_id == customer_id)
        churns[customer_id] = list((await uow.session.execute(query)).scalars())
    return churns[customer_id]


def record_churn(uow: UnitOfWork, churn: ChurnFact) -> None:
    """A churn added in this transaction, for the batch's later late-signal checks."""
    churns = uow.state(ReadModelBatch).churns
    if churn.customer_id in churns:
        churns[churn.customer_id].append(churn)


def _facts_change(data: Any) -> bool:
    if isinstance(data, InteractionRecorded):
        return data.type == InteractionType.purchase or (data.type == InteractionType.return_ and bool(data.amount))
    if isinstance(data, SurveyAnswered):
        return data.survey in ("nps", "csat")
    return isinstance(data, CustomerCreated | CustomerUpdated | CustomerErased)


def _kept(data: Any) -> str | None:
    """The kind of fact_events row the event may add (SIGNAL_KINDS decide the late-signal check)."""
    if isinstance(data, InteractionRecorded):
        return interaction_kind(data)
    if isinstance(data, ComplaintOpened):
        return COMPLAINT
    if isinstance(data, ComplaintOverdue):
        return COMPLAINT_OVERDUE
    return SURVEY if isinstance(data, SurveyAnswered) else None


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a batch's preload reads for the read model, less what this transaction has read already."""

    event_ids: list[str]  # whether fact_events holds them
    facts: list[str]  # customers whose customer_facts row to lock and load
    churns: list[str]  # customers whose churns to load (the late-signal check)

    def __bool__(self) -> bool:
        return bool(self.event_ids or self.facts or self.churns)


def wanted(uow: UnitOfWork, events: Sequence[Received[Any]]) -> Wanted:
    """The batch's event ids the read model may store, the customers whose facts its events change (sorted:
    the lock order) and the customers its signals belong to; each less what the transaction has read."""
    state = uow.state(ReadModelBatch)
    kept = [(e, kind) for e in events if (kind := _kept(e.data)) is not None]
    return Wanted(
        event_ids=sorted({e.id for e, _ in kept} - state.checked),
        facts=sorted({e.data.customer_id for e in events if _facts_change(e.data)} - set(state.facts)),
        churns=sorted({e.data.customer_id for e, kind in kept if kind in SIGNAL_KINDS} - set(state.churns)),
    )


def loaded(
    uow: UnitOfWork, wanted: Wanted, stored: Iterable[str], facts: Iterable[CustomerFact], churns: Iterable[ChurnFact]
) -> None:
    """Keep what the batch's preload read for `wanted` (services/retention/batch_rows.py) in the transaction's
    state: the event ids stored already, the locked facts rows (None: none yet), every churn in read order."""
    state = uow.state(ReadModelBatch)
    if wanted.event_ids:
        state.stored.update(stored)
        state.checked.update(wanted.event_ids)
    if wanted.facts:
        found = {row.customer_id: row for row in facts}
        state.facts.update({i: found.get(i) for i in wanted.facts})
    if wanted.churns:
        for i in wanted.churns:
            state.churns[i] = []
        for churn in churns:
            state.churns[churn.customer_id].append(churn)
