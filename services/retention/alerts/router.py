"""HTTP routes of alerts: the prioritised list, the SSE stream of changes, and the actions on one alert."""

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import StreamingResponse

from contracts.common import Severity
from servicekit.deps import SessionDep
from servicekit.pagination import BIGINT_MAX, DEFAULT_PAGE, Limit, Offset
from servicekit.unit_of_work import UnitOfWork
from services.retention import stream
from services.retention.alerts import actions, service
from services.retention.alerts.models import (
    AlertAcknowledge,
    AlertPublic,
    AlertResolve,
    AlertSnooze,
    AlertsPublic,
    AlertStatus,
)
from services.retention.db import Tier
from services.retention.settings import RetentionSettings

router = APIRouter()


@router.get("/alerts", response_model=AlertsPublic, tags=["alerts"])
async def list_alerts(
    session: SessionDep,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: Annotated[list[AlertStatus] | None, Query(description="repeat to match any of several")] = None,
    reason: Annotated[list[str] | None, Query(description="reason code, e.g. high_churn_risk; repeatable")] = None,
    severity: Annotated[list[Severity] | None, Query(description="repeatable")] = None,
    owner: Annotated[list[str] | None, Query(description="account manager; repeatable")] = None,
    tier: Annotated[list[Tier] | None, Query(description="value tier; repeatable")] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> AlertsPublic:
    """Alerts by priority (value at risk = CLV x churn risk; unknown last), then the most recently triggered."""
    # Lazy wake-up: a snooze that has run out shows as open even between two housekeeping rounds.
    if await actions.wake_snoozed(uow=UnitOfWork(session)):
        await session.commit()
    alerts, total = await service.list_alerts(
        session=session,
        customer_id=customer_id,
        statuses=status or (),
        reasons=reason or (),
        severities=severity or (),
        owners=owner or (),
        tiers=tier or (),
        limit=limit,
        offset=offset,
    )
    return AlertsPublic(items=[AlertPublic.of(a) for a in alerts], total=total, limit=limit, offset=offset)


@router.get("/alerts/stream", tags=["alerts"], response_class=StreamingResponse)
async def alert_stream(
    request: Request,
    last_event_id: Annotated[int | None, Header(ge=0, le=BIGINT_MAX)] = None,
    after: Annotated[int | None, Query(ge=0, le=BIGINT_MAX, description="same as the Last-Event-ID header")] = None,
) -> StreamingResponse:
    """Server-sent events of alert changes (event: alert.raised|alert.updated|alert.resolved; id: sequence)."""
    settings: RetentionSettings = request.app.state.settings
    hub = await stream.broadcaster(
        request.app, settings.stream_poll_interval_s, settings.stream_gap_wait_s, settings.stream_queue_max
    )
    resume = last_event_id if last_event_id is not None else after
    return StreamingResponse(
        hub.events(resume, settings.stream_keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/alerts/{alert_id}", response_model=AlertPublic, tags=["alerts"])
async def get_alert(alert_id: str, session: SessionDep) -> AlertPublic:
    if await actions.wake_snoozed(uow=UnitOfWork(session)):
        await session.commit()
    return AlertPublic.of(await service.get_alert(session=session, alert_id=alert_id))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic, tags=["alerts"])
async def acknowledge_alert(
    alert_id: str, session: SessionDep, data: Annotated[AlertAcknowledge | None, Body()] = None
) -> AlertPublic:
    alert = await actions.acknowledge_alert(
        uow=UnitOfWork(session), alert_id=alert_id, owner=data.owner if data else None
    )
    await session.commit()
    return AlertPublic.of(alert)


@router.post("/alerts/{alert_id}/snooze", response_model=AlertPublic, tags=["alerts"])
async def snooze_alert(alert_id: str, data: AlertSnooze, session: SessionDep) -> AlertPublic:
    alert = await actions.snooze_alert(uow=UnitOfWork(session), alert_id=alert_id, until=data.until, reason=data.reason)
    await session.commit()
    return AlertPublic.of(alert)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic, tags=["alerts"])
async def resolve_alert(alert_id: str, data: AlertResolve, session: SessionDep) -> AlertPublic:
    alert = await actions.resolve_alert(
        uow=UnitOfWork(session), alert_id=alert_id, outcome=data.outcome, note=data.note
    )
    await session.commit()
    return AlertPublic.of(alert)
