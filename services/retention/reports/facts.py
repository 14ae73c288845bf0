"""The retention read model's writers and reads: consumed events into fact_events, customer_facts and
churn_facts (models.py), duplicate-safe on the event id. Handlers never commit (the consumer does).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, case, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.customer import CustomerCreated, CustomerStatusChanged, CustomerUpdated, team_attribute
from contracts.interaction import (
    ComplaintOpened,
    ComplaintOverdue,
    InteractionRecorded,
    SurveyAnswered,
    survey_dimension,
)
from contracts.retention import SurveyResponded
from servicekit.clock import utc_now
from servicekit.db import update_at_commit
from servicekit.events.envelope import Received
from servicekit.sql import dialect_insert
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports import batch, order_months, reason_suggestion
from services.retention.reports.models import (
    COMPLAINT,
    COMPLAINT_OVERDUE,
    ORDER,
    OWNER_CHANGE,
    RETURN,
    SIGNAL_KINDS,
    SURVEY,
    SURVEY_DIMENSION,
    SURVEY_DIMENSIONS,
    ChurnFact,
    CustomerFact,
    CustomerLoyalty,
    FactEvent,
)
from services.retention.reports.sql import month_number
from services.retention.settings import get_settings


async def _insert(session: AsyncSession, **row: Any) -> bool:
    """Store one fact event; False when its event id is stored already (a redelivery)."""
    table = FactEvent.__table__  # type: ignore[attr-defined]
    query = dialect_insert(session)(table).on_conflict_do_nothing(index_elements=[table.c.event_id])
    result = await session.execute(query.values(**row).returning(table.c.event_id))
    return result.first() is not None


async def backfill_order_months(session: AsyncSession) -> None:
    """Every customer's purchase months from the orders recorded, in one statement (as the migration does)."""
    facts_table = CustomerFact.__table__  # type: ignore[attr-defined]
    events = FactEvent.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    offset = month_number(events.c.at, dialect) - month_number(facts_table.c.first_order_at, dialect)
    bit = literal(1, BigInteger).op("<<")(offset)
    bits = (
        select(func.sum(bit.distinct()))
        .where(
            events.c.customer_id == facts_table.c.customer_id,
            events.c.kind == ORDER,
            offset >= 0,
            offset < order_months.MONTH_BITS,
        )
        .scalar_subquery()
    )
    query = update(facts_table).where(facts_table.c.first_order_at.is_not(None))
    first_month = month_number(facts_table.c.first_order_at, dialect)
    await session.execute(query.values(order_months=func.coalesce(bits, 0), first_order_month=first_month))


async def on_interaction(uow: UnitOfWork, event: Received[InteractionRecorded]) -> None:
    data = event.data
    kind = batch.interaction_kind(data)
    if kind is None or not await batch.is_new(uow, event.id):
        return
    at = as_utc(data.occurred_at)
    amount = float(data.amount) if data.amount is not None else None
    row = {"category": data.category, "amount": amount}
    batch.hold_fact_event(uow, event_id=event.id, customer_id=data.customer_id, kind=kind, at=at, **row)
    if kind == ORDER:
        fact = await batch.locked_facts(uow, data.customer_id)
        first = as_utc(fact.first_order_at) if fact.first_order_at is not None else None
        last = as_utc(fact.last_order_at) if fact.last_order_at is not None else None
        update_at_commit(
            uow.session,
            fact,
            order_months=order_months.with_order(fact.order_months or 0, first, at),
            first_order_month=order_months.month_number(at if first is None else min(first, at)),
            orders=(fact.orders or 0) + 1,
            revenue=(fact.revenue or 0.0) + (amount or 0.0),
            first_order_at=at if first is None else min(first, at),
            last_order_at=at if last is None else max(last, at),
            updated_at=utc_now(),
        )
    elif kind == RETURN and amount:
        fact = await batch.locked_facts(uow, data.customer_id)
        update_at_commit(uow.session, fact, revenue=(fact.revenue or 0.0) - abs(amount), updated_at=utc_now())
    await _late_signal(uow, data.customer_id, kind, at)


async def on_signal(uow: UnitOfWork, event: Received[Any]) -> None:
    """complaint.opened, complaint.overdue and survey.answered (score.updated lives in customer_scores)."""
    data = event.data
    if isinstance(data, ComplaintOpened):
        row: dict[str, Any] = {"kind": COMPLAINT, "category": data.category, "at": as_utc(data.opened_at)}
    elif isinstance(data, ComplaintOverdue):
        row = {"kind": COMPLAINT_OVERDUE, "category": data.category, "at": as_utc(data.due_at)}
    elif isinstance(data, SurveyAnswered):
        dimension = data.dimension
        row = {
            "kind": SURVEY,
            "category": data.survey,
            "dimension": dimension if dimension in SURVEY_DIMENSIONS else None,
            "score": data.score,
            "at": as_utc(data.answered_at),
        }
    else:
        return
    if not await batch.is_new(uow, event.id):
        return
    batch.hold_fact_event(uow, event_id=event.id, customer_id=data.customer_id, **row)
    if isinstance(data, SurveyAnswered) and data.survey in ("nps", "csat"):
        fact = await batch.locked_facts(uow, data.customer_id)
        at = row["at"]
        latest = getattr(fact, f"{data.survey}_at")
        if latest is None or as_utc(latest) <= at:  # an older answer arriving late is not the latest
            values = {data.survey: data.score, f"{data.survey}_at": at, "updated_at": utc_now()}
            update_at_commit(uow.session, fact, **values)
    await _late_signal(uow, data.customer_id, row["kind"], row["at"])


async def on_link_answer(session: AsyncSession, answer: SurveyResponded) -> None:
    """The per-dimension scores of a survey-link answer, in the transaction that records the answer."""
    for name, score in sorted(answer.dimensions.items()):
        dimension = survey_dimension(name)
        if dimension is None:
            continue
        await _insert(
            session,
            event_id=f"survey-link:{answer.link_id}:{name}",
            customer_id=answer.customer_id,
            kind=SURVEY_DIMENSION,
            category=answer.survey,
            dimension=dimension,
            score=score,
            at=as_utc(answer.answered_at),
        )


def _apply_attributes(uow: UnitOfWork, fact: CustomerFact, attributes: dict[str, Any]) -> None:
    wallet = attributes.get("share_of_wallet")
    ok = isinstance(wallet, int | float) and not isinstance(wallet, bool) and 0 <= wallet <= 1
    update_at_commit(
        uow.session,
        fact,
        team=team_attribute(attributes),
        share_of_wallet=float(wallet) if ok else None,
        updated_at=utc_now(),
    )


async def on_customer_created(uow: UnitOfWork, event: Received[CustomerCreated]) -> None:
    data = event.data
    _apply_attributes(uow, await batch.locked_facts(uow, data.customer_id), data.attributes)
    churned_on = getattr(data, "churned_at", None)
    if data.status == "churned" and churned_on is not None:
        at = datetime.combine(churned_on, datetime.max.time(), tzinfo=as_utc(data.created_at).tzinfo)
        await _record_churn(
            uow,
            event_id=f"{data.customer_id}:imported-churn",
            customer_id=data.customer_id,
            at=as_utc(at),
            reason=data.churn_reason,
            side=data.side,
            voluntary=data.voluntary,
        )


async def owner_of(session: AsyncSession, customer_id: str) -> str | None:
    """The replica's owner before an update is applied (to notice an owner change)."""
    replica = await session.get(Customer, customer_id)
    return replica.owner if replica is not None else None


async def on_customer_updated(uow: UnitOfWork, event: Received[CustomerUpdated], *, previous_owner: str | None) -> None:
    data = event.data
    replica = await uow.session.get(Customer, data.customer_id)
    if replica is None or replica.erased_at is not None or replica.version != data.version:
        return  # ignored by the replica (older than what it holds): ignored here too
    changed = set(data.changed) or {"owner", "attributes"}
    if "attributes" in changed:
        _apply_attributes(uow, await batch.locked_facts(uow, data.customer_id), data.attributes)
    if previous_owner is not None and replica.owner != previous_owner:
        at = as_utc(event.envelope.time)  # when the customer service published the change
        if await batch.is_new(uow, event.id):
            batch.hold_fact_event(uow, event_id=event.id, customer_id=data.customer_id, kind=OWNER_CHANGE, at=at)
            await _late_signal(uow, data.customer_id, OWNER_CHANGE, at)


async def on_status_changed(uow: UnitOfWork, event: Received[CustomerStatusChanged], at: datetime) -> None:
    data = event.data
    if data.status != "churned":
        return
    await _record_churn(
        uow,
        event_id=event.id,
        customer_id=data.customer_id,
        at=at,
        reason=data.reason,
        side=data.side,
        voluntary=data.voluntary,
    )


async def _record_churn(
    uow: UnitOfWork,
    *,
    event_id: str,
    customer_id: str,
    at: datetime,
    reason: str | None,
    side: str | None,
    voluntary: bool | None,
) -> None:
    session = uow.session
    if await session.get(ChurnFact, event_id) is not None:
        return  # a redelivery
    replica = await session.get(Customer, customer_id)
    score = await session.get(CustomerScore, customer_id)
    fact = await batch.known_facts(uow, customer_id)
    churn = ChurnFact(
        event_id=event_id,
        customer_id=customer_id,
        churned_at=at,
        reason=reason_suggestion.recorded_reason(reason),
        side=side,
        voluntary=voluntary,
        tier=(replica.tier if replica else None) or (score.value_tier if score else None),
        segment=replica.segment if replica else None,
        owner=replica.owner if replica else None,
        team=fact.team if fact else None,
        historical_value=fact.revenue if fact else 0.0,
        predicted_value=score.clv if score else None,
    )
    session.add(churn)
    await session.flush()
    batch.record_churn(uow, churn)
    await refresh_suggestion(session, churn)


async def refresh_suggestion(session: AsyncSession, churn: ChurnFact) -> None:
    """(Re)compute the churn's suggested reason from the signals dated in the look-back before it."""
    lookback = timedelta(days=get_settings().suggestion_lookback_days)
    churned_at = as_utc(churn.churned_at)
    await batch.store_new_fact_events(session)  # the transaction's held rows, for the query below
    rows = (
        await session.execute(
            select(FactEvent.event_id, FactEvent.kind, FactEvent.category, FactEvent.at)
            .where(
                FactEvent.customer_id == churn.customer_id,
                FactEvent.kind.in_(SIGNAL_KINDS),  # type: ignore[attr-defined]
                FactEvent.at >= churned_at - lookback,
                FactEvent.at <= churned_at,
            )
            .order_by(FactEvent.at.desc())  # type: ignore[attr-defined]
            .limit(500)
        )
    ).all()
    signals = [reason_suggestion.SignalFact(r.event_id, r.kind, r.category, as_utc(r.at)) for r in rows]
    suggestion = reason_suggestion.suggest(signals)
    churn.suggested_reason = suggestion.reason
    churn.suggestion_confidence = suggestion.confidence if suggestion.reason else None
    churn.suggestion_votes = suggestion.votes
    churn.suggestion_evidence = [
        {"event_id": s.event_id, "kind": s.kind, "category": s.category, "at": s.at.isoformat()}
        for s in suggestion.evidence
    ]
    churn.suggested_at = utc_now()
    await session.flush()


async def _late_signal(uow: UnitOfWork, customer_id: str, kind: str, at: datetime) -> None:
    """A signal that arrives after the churn it preceded (another topic, no mutual order) updates its suggestion."""
    if kind not in SIGNAL_KINDS:
        return
    lookback = timedelta(days=get_settings().suggestion_lookback_days)
    for churn in await batch.churns_of(uow, customer_id):
        if at <= as_utc(churn.churned_at) <= at + lookback:
            await refresh_suggestion(uow.session, churn)


async def erase(uow: UnitOfWork, customer_id: str) -> None:
    """Erasure: the attributes copied from the customer go, and so do the rows kept for the reports' speed
    (today's loyalty type); ids, codes and numbers stay as anonymous facts."""
    loyalty_rows = CustomerLoyalty.__table__  # type: ignore[attr-defined]
    await uow.session.execute(delete(loyalty_rows).where(loyalty_rows.c.customer_id == customer_id))
    fact = await batch.locked_stored_facts(uow, customer_id)
    if fact is not None:
        update_at_commit(uow.session, fact, team=None, share_of_wallet=None, updated_at=utc_now())


async def latest_churn(session: AsyncSession, customer_id: str) -> ChurnFact | None:
    return (
        await session.execute(
            select(ChurnFact)
            .where(ChurnFact.customer_id == customer_id)
            .order_by(ChurnFact.churned_at.desc())  # type: ignore[attr-defined]
            .limit(1)
        )
    ).scalar_one_or_none()


async def customer_facts(session: AsyncSession, customer_id: str) -> CustomerFact | None:
    return await session.get(CustomerFact, customer_id)


async def order_windows(session: AsyncSession, customer_id: str, as_of: datetime, window: timedelta) -> tuple[int, int]:
    """Orders in (as_of - window, as_of] and in the window before it."""
    recent = func.sum(case((FactEvent.at > as_of - window, 1), else_=0))
    row = (
        await session.execute(
            select(func.count(), recent).where(
                FactEvent.customer_id == customer_id,
                FactEvent.kind == ORDER,
                FactEvent.at > as_of - 2 * window,
                FactEvent.at <= as_of,
            )
        )
    ).one()
    total, recent_count = int(row[0] or 0), int(row[1] or 0)
    return recent_count, total - recent_count
