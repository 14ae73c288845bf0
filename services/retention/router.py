"""HTTP routes of the retention service."""

from typing import Annotated

from fastapi import APIRouter, Body, Query

from servicekit.deps import SessionDep
from servicekit.events.contracts.common import Severity
from services.retention import service
from services.retention.models import (
    AlertAcknowledge,
    AlertPublic,
    AlertResolve,
    AlertsPublic,
    AlertStatus,
)

router = APIRouter(prefix="/alerts", tags=["alerts"])


@router.get("", response_model=AlertsPublic)
async def list_alerts(
    session: SessionDep,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: Annotated[list[AlertStatus] | None, Query(description="repeat to match any of several")] = None,
    reason: Annotated[list[str] | None, Query(description="reason code, e.g. high_churn_risk; repeatable")] = None,
    severity: Annotated[list[Severity] | None, Query(description="repeatable")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AlertsPublic:
    """Alerts by priority: largest value at risk first (unknown last), then the most recently triggered."""
    alerts, total = await service.list_alerts(
        session=session,
        customer_id=customer_id,
        statuses=status or (),
        reasons=reason or (),
        severities=severity or (),
        limit=limit,
        offset=offset,
    )
    return AlertsPublic(items=[AlertPublic.of(a) for a in alerts], total=total, limit=limit, offset=offset)


@router.get("/{alert_id}", response_model=AlertPublic)
async def get_alert(alert_id: str, session: SessionDep) -> AlertPublic:
    return AlertPublic.of(await service.get_alert(session=session, alert_id=alert_id))


@router.post("/{alert_id}/acknowledge", response_model=AlertPublic)
async def acknowledge_alert(
    alert_id: str, session: SessionDep, data: Annotated[AlertAcknowledge | None, Body()] = None
) -> AlertPublic:
    alert = await service.acknowledge_alert(session=session, alert_id=alert_id, owner=data.owner if data else None)
    await session.commit()
    return AlertPublic.of(alert)


@router.post("/{alert_id}/resolve", response_model=AlertPublic)
async def resolve_alert(alert_id: str, data: AlertResolve, session: SessionDep) -> AlertPublic:
    alert = await service.resolve_alert(session=session, alert_id=alert_id, outcome=data.outcome, note=data.note)
    await session.commit()
    return AlertPublic.of(alert)
