"""An agent's queue: one work item per customer; and judging every customer once after a backfill.

GET /work-items groups a customer's unresolved alerts (one per reason underneath, with their own dedup,
rules and metrics) into one item with every firing reason, ranked by value at risk like the alerts.

POST /alerts/evaluate runs the alert rules once on each customer's current state (its latest score), a
page of customers per call: the caller follows ``next_after`` until ``done``, which gives the progress
(``evaluated`` of ``total``). Each evaluation is a signal with an id made of the customer and its
score's time, so evaluating the same state again raises nothing twice. An evaluation is a change of
lens, judged like a model's activation (signals/history.py): a customer whose own latest event lies
beyond the alert history horizon is left to win-back and counted, not alerted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import Severity
from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.deps import SessionDep
from servicekit.events.envelope import CloudEvent, Received
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset, Page
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import wake_snoozed
from services.retention.alerts.models import Alert, AlertStatus
from services.retention.alerts.service import handle_event
from services.retention.db import UtcDatetime
from services.retention.replica.models import Customer, CustomerScore
from services.retention.rules.causes import EVALUATION_CAUSE
from services.retention.settings import get_settings
from services.retention.signals import history

router = APIRouter(tags=["alerts"])

SEVERITY_ORDER = {name: i for i, name in enumerate(("low", "medium", "high", "critical"))}
UNRESOLVED = (AlertStatus.open, AlertStatus.acknowledged, AlertStatus.snoozed)
SOURCE = "/crm/retention/evaluate"


class WorkReason(BaseModel):
    alert_id: str
    reason: str
    severity: Severity
    status: AlertStatus
    churn_risk: float | None
    last_triggered_at: UtcDatetime


class WorkItem(BaseModel):
    customer_id: str
    owner: str | None
    tier: str | None
    segment: str | None
    severity: Severity = Field(description="the worst of its reasons")
    value_at_risk: float | None
    churn_risk: float | None
    first_triggered_at: UtcDatetime
    last_triggered_at: UtcDatetime
    reasons: list[WorkReason] = Field(description="every unresolved alert of the customer, worst first")


class WorkItemsPage(Page[WorkItem]):
    pass


async def work_items(
    *,
    session: AsyncSession,
    statuses: tuple[AlertStatus, ...],
    owners: list[str],
    tiers: list[str],
    limit: int,
    offset: int,
) -> tuple[list[WorkItem], int]:
    conditions = [Alert.status.in_([s.value for s in statuses])]  # type: ignore[attr-defined]
    if owners:
        conditions.append(Alert.owner.in_(owners))  # type: ignore[union-attr]
    if tiers:
        conditions.append(Alert.tier.in_(tiers))  # type: ignore[union-attr]
    value = func.max(Alert.value_at_risk).label("value")
    latest = func.max(Alert.last_triggered_at).label("latest")
    grouped = (
        select(Alert.customer_id, value, latest)
        .where(*conditions)
        .group_by(Alert.customer_id)
        .order_by(value.desc().nulls_last(), latest.desc(), Alert.customer_id)
    )
    total = (
        await session.execute(select(func.count(func.distinct(Alert.customer_id))).where(*conditions))
    ).scalar_one()
    page = [row.customer_id for row in await session.execute(grouped.limit(limit).offset(offset))]
    if not page:
        return [], total
    alerts = (await session.execute(select(Alert).where(*conditions, Alert.customer_id.in_(page)))).scalars().all()  # type: ignore[attr-defined]
    by_customer: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_customer.setdefault(alert.customer_id, []).append(alert)
    items = []
    for customer_id in page:
        group = sorted(
            by_customer[customer_id],
            key=lambda a: (-SEVERITY_ORDER.get(str(a.severity), 0), -(a.value_at_risk or 0), a.reason),
        )
        worst = group[0]
        risks = [a.churn_risk for a in group if a.churn_risk is not None]
        values = [a.value_at_risk for a in group if a.value_at_risk is not None]
        items.append(
            WorkItem(
                customer_id=customer_id,
                owner=worst.owner,
                tier=worst.tier,
                segment=worst.segment,
                severity=worst.severity,
                value_at_risk=max(values) if values else None,
                churn_risk=max(risks) if risks else None,
                first_triggered_at=min(a.first_triggered_at for a in group),
                last_triggered_at=max(a.last_triggered_at for a in group),
                reasons=[
                    WorkReason(
                        alert_id=a.id,
                        reason=a.reason,
                        severity=a.severity,
                        status=a.status,
                        churn_risk=a.churn_risk,
                        last_triggered_at=a.last_triggered_at,
                    )
                    for a in group
                ],
            )
        )
    return items, total


@router.get("/work-items", response_model=WorkItemsPage)
async def list_work_items(
    session: SessionDep,
    status: Annotated[
        list[AlertStatus] | None, Query(description="alert statuses that make an item; default open and acknowledged")
    ] = None,
    owner: Annotated[list[str] | None, Query(description="account manager; repeatable")] = None,
    tier: Annotated[list[str] | None, Query(description="value tier; repeatable")] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> WorkItemsPage:
    """One item per customer with all its unresolved alerts' reasons, by value at risk (unknown last)."""
    if await wake_snoozed(uow=UnitOfWork(session)):
        await session.commit()
    statuses = tuple(s for s in (status or (AlertStatus.open, AlertStatus.acknowledged)) if s in UNRESOLVED)
    items, total = await work_items(
        session=session, statuses=statuses, owners=owner or [], tiers=tier or [], limit=limit, offset=offset
    )
    return WorkItemsPage(items=items, total=total, limit=limit, offset=offset)


# ---- evaluate on the current state ----------------------------------------------------------------


class Evaluation(BaseModel):
    evaluated: int = Field(description="customers judged by this call")
    alerts_changed: int = Field(description="alerts raised or updated by this call")
    skipped: int = Field(description="customers left out: churned or erased")
    left_to_win_back: int = Field(
        0,
        description="customers not judged because their own latest event lies beyond the alert history horizon: "
        "win-back's (campaigns), not the retention queue's",
    )
    total: int = Field(description="customers with a score, the whole run")
    next_after: str | None = Field(description="pass as ?after= for the next page; null when done")
    done: bool


def _evaluation_event(score: CustomerScore) -> Received[ScoreUpdated]:
    as_of = as_utc(score.as_of)
    data = ScoreUpdated(
        customer_id=score.customer_id,
        previous=None,
        current=ScoreValues(
            churn_risk=score.churn_risk,
            health=0.0,  # not read by the rules
            value_tier=score.value_tier,
            lifecycle_stage=score.lifecycle_stage,
            p_alive=score.p_alive,
            clv=score.clv,
        ),
        factors=[],
        model_version="evaluation",
        caused_by=f"evaluation:{score.customer_id}",
        computed_at=as_of,
        as_of=as_of,
        cause=EVALUATION_CAUSE,
        last_event_at=score.last_event_at,
    )
    envelope = CloudEvent.wrap(data, source=SOURCE)
    envelope.id = f"evaluate:{score.customer_id}:{as_of.isoformat()}"
    return Received(envelope=envelope, data=data)


async def evaluate_page(*, session: AsyncSession, after: str, limit: int) -> Evaluation:
    total = (await session.execute(select(func.count()).select_from(CustomerScore))).scalar_one()
    scores = (
        (
            await session.execute(
                select(CustomerScore)
                .where(CustomerScore.customer_id > after)
                .order_by(CustomerScore.customer_id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    ids = [s.customer_id for s in scores]
    replicas = {
        c.customer_id: c
        for c in (await session.execute(select(Customer).where(Customer.customer_id.in_(ids)))).scalars()  # type: ignore[attr-defined]
    }
    evaluated = skipped = win_back = changed = 0
    uow = UnitOfWork(session)  # the customers' rows, locked once for the whole page
    horizon, now = get_settings().alert_history_horizon_days, datetime.now(UTC)
    for score in scores:
        replica = replicas.get(score.customer_id)
        if replica is not None and (replica.erased_at is not None or replica.status == "churned"):
            skipped += 1
            continue
        # Judged now, as a change of lens is (signals/history.py): by the customer's own latest event.
        last = score.last_event_at
        if last is not None and history.beyond(last, now=now, horizon_days=horizon):
            win_back += 1
            continue
        evaluated += 1
        changed += len(await handle_event(uow=uow, event=_evaluation_event(score)))
    done = len(scores) < limit
    return Evaluation(
        evaluated=evaluated,
        alerts_changed=changed,
        skipped=skipped,
        left_to_win_back=win_back,
        total=total,
        next_after=None if done else ids[-1],
        done=done,
    )


@router.post("/alerts/evaluate", response_model=Evaluation)
async def evaluate_alerts(
    session: SessionDep,
    after: Annotated[str, Query(max_length=100, description="next_after of the previous call")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Evaluation:
    """Run the alert rules once on each customer's current state, a page of customers per call (after
    an import whose history raised no alerts). Repeating it on an unchanged state raises nothing new.
    Customers whose own latest event lies beyond the alert history horizon are counted, not judged."""
    result = await evaluate_page(session=session, after=after, limit=limit)
    await session.commit()
    return result
