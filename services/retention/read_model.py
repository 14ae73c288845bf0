"""The retention read model: per-customer facts the retention reports need, fed by consumed events.

Why here: the reports (owner performance, value lost to churn, complaint-to-churn conversion,
satisfaction, loyalty, suggested churn reasons) join facts owned by several services: churns
(crm.customer.v1), complaints, surveys and purchases (crm.interaction.v1) and value (crm.scoring.v1,
kept in customer_scores). Retention already consumes those three topics and keeps the customer replica
(owner, segment, tier, status) and the alerts, so it aggregates them in its own store without reading
another service's tables (docs/reports.md, "Retention").

Tables (ids, codes, numbers and times only; events carry no personal data and neither do these):
- ``fact_events``: one row per consumed event that matters (order, return, incident, complaint,
  overdue complaint, survey answer, owner change, price or competitor contact), keyed by event id, so
  redelivery changes nothing.
- ``customer_facts``: per customer, counters maintained from the rows just inserted (orders, revenue,
  first and last order) and the latest NPS and CSAT, plus the non-personal ``team`` and
  ``share_of_wallet`` attributes where the customer service declares them.
- ``churn_facts``: one row per churn (keyed by the status change's event id) with the tier, segment,
  owner and team at churn, the value lost (historical and predicted), and the suggested reason.
Handlers never commit (the consumer does).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field

from contracts.common import InteractionType
from contracts.customer import CustomerCreated, CustomerStatusChanged, CustomerUpdated
from contracts.interaction import (
    ComplaintOpened,
    ComplaintOverdue,
    InteractionRecorded,
    SurveyAnswered,
    survey_dimension,
)
from contracts.retention import SurveyResponded
from servicekit.clock import utc_now
from servicekit.db import dialect_insert
from servicekit.events.envelope import Received
from servicekit.tables import BigIntId
from servicekit.types import UtcDateTime, as_utc
from services.retention import reason_suggestion
from services.retention.alerts.models import Alert
from services.retention.db import RetentionTable
from services.retention.replica.models import Customer, CustomerScore
from services.retention.settings import get_settings


def _at(*, nullable: bool = False, index: bool = False) -> Any:
    column = Column(UtcDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utc_now, sa_column=column)


class FactEvent(RetentionTable, table=True):
    __tablename__ = "fact_events"
    __table_args__ = (
        Index("ix_fact_events_customer_kind_at", "customer_id", "kind", "at"),
        # Periods across customers (reports): covering what the reports read of each row, so a period's
        # orders, complaints and answers are read from the index alone.
        Index("ix_fact_events_kind_at", "kind", "at", "customer_id", "category", "score", "dimension"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=200, unique=True)
    customer_id: str = Field(max_length=100)
    kind: str = Field(max_length=30)
    category: str | None = Field(default=None, max_length=100)
    dimension: str | None = Field(default=None, max_length=30)  # of a survey answer
    score: int | None = None  # of a survey answer
    amount: float | None = None  # of an order or return
    at: datetime = _at()


class CustomerFact(RetentionTable, table=True):
    __tablename__ = "customer_facts"

    customer_id: str = Field(primary_key=True, max_length=100)
    team: str | None = Field(default=None, max_length=100, index=True)
    share_of_wallet: float | None = None
    orders: int = 0
    revenue: float = 0.0
    first_order_at: datetime | None = _at(nullable=True)
    last_order_at: datetime | None = _at(nullable=True)
    nps: int | None = None
    nps_at: datetime | None = _at(nullable=True)
    csat: int | None = None
    csat_at: datetime | None = _at(nullable=True)
    updated_at: datetime = _at()


class ChurnFact(RetentionTable, table=True):
    __tablename__ = "churn_facts"

    event_id: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(max_length=100, index=True)
    churned_at: datetime = _at(index=True)
    reason: str | None = Field(default=None, max_length=100)
    side: str | None = Field(default=None, max_length=20)
    voluntary: bool | None = None
    tier: str | None = Field(default=None, max_length=20)
    segment: str | None = Field(default=None, max_length=100)
    owner: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=100)
    historical_value: float | None = None  # revenue recorded up to the churn
    predicted_value: float | None = None  # the latest CLV known at the churn
    suggested_reason: str | None = Field(default=None, max_length=100)
    suggestion_confidence: float | None = None
    suggestion_votes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    suggestion_evidence: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    suggested_at: datetime | None = _at(nullable=True)


# The owner-performance report reads the alerts raised in a period.
Index("ix_alerts_first_triggered_at", Alert.__table__.c.first_triggered_at)  # type: ignore[attr-defined]

# Kinds of fact_events.
ORDER, RETURN, INCIDENT = "order", "return", "incident"
COMPLAINT, COMPLAINT_OVERDUE, SURVEY = "complaint", "complaint_overdue", "survey"
# A dimension score of a survey-link answer (the overall score arrives as survey.answered).
SURVEY_DIMENSION = "survey_dimension"
OWNER_CHANGE, PRICE_CONTACT, COMPETITOR_CONTACT = "owner_change", "price_contact", "competitor_contact"
SIGNAL_KINDS = (COMPLAINT, COMPLAINT_OVERDUE, INCIDENT, RETURN, OWNER_CHANGE, PRICE_CONTACT, COMPETITOR_CONTACT)
# Interaction categories that make a contact price-related or competitor-related.
PRICE_CATEGORIES = frozenset({"price", "pricing", "billing", "discount"})
COMPETITOR_CATEGORIES = frozenset({"competitor", "competition"})
SURVEY_DIMENSIONS = ("product", "service", "relationship")


async def _insert(session: AsyncSession, **row: Any) -> bool:
    """Store one fact event; False when its event id is stored already (a redelivery)."""
    table = FactEvent.__table__  # type: ignore[attr-defined]
    query = dialect_insert(session)(table).on_conflict_do_nothing(index_elements=[table.c.event_id])
    result = await session.execute(query.values(**row).returning(table.c.event_id))
    return result.first() is not None


async def _facts(session: AsyncSession, customer_id: str) -> CustomerFact:
    fact = await session.get(CustomerFact, customer_id, with_for_update=True)
    if fact is None:
        fact = CustomerFact(customer_id=customer_id)
        session.add(fact)
    return fact


def _interaction_kind(data: InteractionRecorded) -> str | None:
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


async def on_interaction(session: AsyncSession, event: Received[InteractionRecorded]) -> None:
    data = event.data
    kind = _interaction_kind(data)
    if kind is None:
        return
    at = as_utc(data.occurred_at)
    amount = float(data.amount) if data.amount is not None else None
    row = {"category": data.category, "amount": amount}
    if not await _insert(session, event_id=event.id, customer_id=data.customer_id, kind=kind, at=at, **row):
        return
    if kind == ORDER:
        fact = await _facts(session, data.customer_id)
        fact.orders += 1
        fact.revenue += amount or 0.0
        fact.first_order_at = at if fact.first_order_at is None else min(as_utc(fact.first_order_at), at)
        fact.last_order_at = at if fact.last_order_at is None else max(as_utc(fact.last_order_at), at)
        fact.updated_at = utc_now()
    elif kind == RETURN and amount:
        fact = await _facts(session, data.customer_id)
        fact.revenue -= abs(amount)
        fact.updated_at = utc_now()
    await session.flush()
    await _late_signal(session, data.customer_id, kind, at)


async def on_signal(session: AsyncSession, event: Received[Any]) -> None:
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
    if not await _insert(session, event_id=event.id, customer_id=data.customer_id, **row):
        return
    if isinstance(data, SurveyAnswered) and data.survey in ("nps", "csat"):
        fact = await _facts(session, data.customer_id)
        at = row["at"]
        latest = getattr(fact, f"{data.survey}_at")
        if latest is None or as_utc(latest) <= at:  # an older answer arriving late is not the latest
            setattr(fact, data.survey, data.score)
            setattr(fact, f"{data.survey}_at", at)
            fact.updated_at = utc_now()
    await session.flush()
    await _late_signal(session, data.customer_id, row["kind"], row["at"])


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


def _apply_attributes(fact: CustomerFact, attributes: dict[str, Any]) -> None:
    team = attributes.get("team")
    fact.team = team if isinstance(team, str) and 0 < len(team) <= 100 else None
    wallet = attributes.get("share_of_wallet")
    ok = isinstance(wallet, int | float) and not isinstance(wallet, bool) and 0 <= wallet <= 1
    fact.share_of_wallet = float(wallet) if ok else None
    fact.updated_at = utc_now()


async def on_customer_created(session: AsyncSession, event: Received[CustomerCreated]) -> None:
    data = event.data
    fact = await _facts(session, data.customer_id)
    _apply_attributes(fact, data.attributes)
    await session.flush()
    churned_on = getattr(data, "churned_at", None)
    if data.status == "churned" and churned_on is not None:
        at = datetime.combine(churned_on, datetime.max.time(), tzinfo=as_utc(data.created_at).tzinfo)
        await _record_churn(
            session,
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


async def on_customer_updated(
    session: AsyncSession, event: Received[CustomerUpdated], *, previous_owner: str | None
) -> None:
    data = event.data
    replica = await session.get(Customer, data.customer_id)
    if replica is None or replica.erased_at is not None or replica.version != data.version:
        return  # ignored by the replica (older than what it holds): ignored here too
    changed = set(data.changed) or {"owner", "attributes"}
    if "attributes" in changed:
        _apply_attributes(await _facts(session, data.customer_id), data.attributes)
        await session.flush()
    if previous_owner is not None and replica.owner != previous_owner:
        at = as_utc(event.envelope.time)  # when the customer service published the change
        if await _insert(session, event_id=event.id, customer_id=data.customer_id, kind=OWNER_CHANGE, at=at):
            await _late_signal(session, data.customer_id, OWNER_CHANGE, at)


async def on_status_changed(session: AsyncSession, event: Received[CustomerStatusChanged], at: datetime) -> None:
    data = event.data
    if data.status != "churned":
        return
    await _record_churn(
        session,
        event_id=event.id,
        customer_id=data.customer_id,
        at=at,
        reason=data.reason,
        side=data.side,
        voluntary=data.voluntary,
    )


async def _record_churn(
    session: AsyncSession,
    *,
    event_id: str,
    customer_id: str,
    at: datetime,
    reason: str | None,
    side: str | None,
    voluntary: bool | None,
) -> None:
    if await session.get(ChurnFact, event_id) is not None:
        return  # a redelivery
    replica = await session.get(Customer, customer_id)
    score = await session.get(CustomerScore, customer_id)
    fact = await session.get(CustomerFact, customer_id)
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
    await refresh_suggestion(session, churn)


async def refresh_suggestion(session: AsyncSession, churn: ChurnFact) -> None:
    """(Re)compute the churn's suggested reason from the signals dated in the look-back before it."""
    lookback = timedelta(days=get_settings().suggestion_lookback_days)
    churned_at = as_utc(churn.churned_at)
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


async def _late_signal(session: AsyncSession, customer_id: str, kind: str, at: datetime) -> None:
    """A signal that arrives after the churn it preceded (another topic, no mutual order) updates its suggestion."""
    if kind not in SIGNAL_KINDS:
        return
    lookback = timedelta(days=get_settings().suggestion_lookback_days)
    churns = (
        (
            await session.execute(
                select(ChurnFact).where(
                    ChurnFact.customer_id == customer_id,
                    ChurnFact.churned_at >= at,
                    ChurnFact.churned_at <= at + lookback,
                )
            )
        )
        .scalars()
        .all()
    )
    for churn in churns:
        await refresh_suggestion(session, churn)


async def erase(session: AsyncSession, customer_id: str) -> None:
    """Erasure: the attributes copied from the customer go; ids, codes and numbers stay as anonymous facts."""
    fact = await session.get(CustomerFact, customer_id, with_for_update=True)
    if fact is not None:
        fact.team = None
        fact.share_of_wallet = None
        fact.updated_at = utc_now()
    await session.flush()


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
