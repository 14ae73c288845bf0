"""HTTP routes of the retention service: alerts, rules, playbooks, tasks, metrics, webhooks."""

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from servicekit.deps import SessionDep
from servicekit.events.contracts.common import Severity
from servicekit.pagination import BIGINT_MAX, DEFAULT_PAGE, Limit, Offset
from services.retention import service, stream, targets
from services.retention.catalog import params_of, rule_of
from services.retention.models import (
    AlertAcknowledge,
    AlertPublic,
    AlertResolve,
    AlertSnooze,
    AlertsPublic,
    AlertStatus,
    DeliveriesPublic,
    DeliveryPublic,
    PlaybookCreate,
    PlaybookPublic,
    PlaybooksPublic,
    PlaybookUpdate,
    PreviewCustomer,
    PreviewPublic,
    PreviewWindow,
    RetentionMetricsPublic,
    RuleCreate,
    RulePreview,
    RulePublic,
    RulesPublic,
    RuleUpdate,
    TaskComplete,
    TaskPublic,
    TasksPublic,
    TaskStatus,
    Tier,
    WebhookCreate,
    WebhookPublic,
    WebhooksPublic,
    utc_now,
)
from services.retention.rules import Rule, RuleKind
from services.retention.settings import RetentionSettings

router = APIRouter()


# ---- alerts --------------------------------------------------------------------------------------


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
    if await service.wake_snoozed(session=session):
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
    if await service.wake_snoozed(session=session):
        await session.commit()
    return AlertPublic.of(await service.get_alert(session=session, alert_id=alert_id))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic, tags=["alerts"])
async def acknowledge_alert(
    alert_id: str, session: SessionDep, data: Annotated[AlertAcknowledge | None, Body()] = None
) -> AlertPublic:
    alert = await service.acknowledge_alert(session=session, alert_id=alert_id, owner=data.owner if data else None)
    await session.commit()
    return AlertPublic.of(alert)


@router.post("/alerts/{alert_id}/snooze", response_model=AlertPublic, tags=["alerts"])
async def snooze_alert(alert_id: str, data: AlertSnooze, session: SessionDep) -> AlertPublic:
    alert = await service.snooze_alert(session=session, alert_id=alert_id, until=data.until, reason=data.reason)
    await session.commit()
    return AlertPublic.of(alert)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic, tags=["alerts"])
async def resolve_alert(alert_id: str, data: AlertResolve, session: SessionDep) -> AlertPublic:
    alert = await service.resolve_alert(session=session, alert_id=alert_id, outcome=data.outcome, note=data.note)
    await session.commit()
    return AlertPublic.of(alert)


# ---- rules ---------------------------------------------------------------------------------------


@router.get("/rules", response_model=RulesPublic, tags=["rules"])
async def list_rules(
    session: SessionDep,
    enabled: bool | None = None,
    kind: RuleKind | None = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> RulesPublic:
    rows, total = await service.list_rules(session=session, enabled=enabled, kind=kind, limit=limit, offset=offset)
    items = [RulePublic.model_validate(r, from_attributes=True) for r in rows]
    return RulesPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/rules", response_model=RulePublic, status_code=status.HTTP_201_CREATED, tags=["rules"])
async def create_rule(data: RuleCreate, session: SessionDep) -> RulePublic:
    rule = await service.create_rule(session=session, data=data)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


def _preview_public(rule: Rule, rule_id: str | None, window: PreviewWindow, result: object) -> PreviewPublic:
    return PreviewPublic(
        rule_id=rule_id,
        reason=rule.reason_code,
        from_=window.from_,
        to=window.to,
        alerts=result.alerts,  # type: ignore[attr-defined]
        triggers=result.triggers,  # type: ignore[attr-defined]
        customers=[PreviewCustomer.model_validate(asdict(h)) for h in result.customers],  # type: ignore[attr-defined]
    )


@router.post("/rules/preview", response_model=PreviewPublic, response_model_by_alias=True, tags=["rules"])
async def preview_unsaved_rule(data: RulePreview, session: SessionDep) -> PreviewPublic:
    """What an unsaved rule would have raised over [from, to) of the stored history. Notifies nobody."""
    params = service._check_rule(data.rule.kind, data.rule.params)
    rule = Rule(
        kind=data.rule.kind,
        severity=data.rule.severity,
        reason=data.rule.reason or "",
        params=params_of(params),
    )
    result = await service.preview_rule(session=session, rule=rule, start=data.from_, end=data.to)
    return _preview_public(rule, None, data, result)


@router.get("/rules/{rule_id}", response_model=RulePublic, tags=["rules"])
async def get_rule(rule_id: str, session: SessionDep) -> RulePublic:
    return RulePublic.model_validate(await service.get_rule(session=session, rule_id=rule_id), from_attributes=True)


@router.patch("/rules/{rule_id}", response_model=RulePublic, tags=["rules"])
async def update_rule(rule_id: str, data: RuleUpdate, session: SessionDep) -> RulePublic:
    rule = await service.update_rule(session=session, rule_id=rule_id, data=data)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["rules"])
async def delete_rule(rule_id: str, session: SessionDep) -> Response:
    await service.delete_rule(session=session, rule_id=rule_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/rules/{rule_id}/enable", response_model=RulePublic, tags=["rules"])
async def enable_rule(rule_id: str, session: SessionDep) -> RulePublic:
    rule = await service.set_rule_enabled(session=session, rule_id=rule_id, enabled=True)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.post("/rules/{rule_id}/disable", response_model=RulePublic, tags=["rules"])
async def disable_rule(rule_id: str, session: SessionDep) -> RulePublic:
    rule = await service.set_rule_enabled(session=session, rule_id=rule_id, enabled=False)
    await session.commit()
    return RulePublic.model_validate(rule, from_attributes=True)


@router.post("/rules/{rule_id}/preview", response_model=PreviewPublic, response_model_by_alias=True, tags=["rules"])
async def preview_rule(rule_id: str, data: PreviewWindow, session: SessionDep) -> PreviewPublic:
    """What this rule (enabled or not) would have raised over [from, to). Writes nothing, notifies nobody."""
    stored = await service.get_rule(session=session, rule_id=rule_id)
    rule = rule_of(stored)
    result = await service.preview_rule(session=session, rule=rule, start=data.from_, end=data.to)
    return _preview_public(rule, stored.id, data, result)


# ---- playbooks -----------------------------------------------------------------------------------


@router.get("/playbooks", response_model=PlaybooksPublic, tags=["playbooks"])
async def list_playbooks(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> PlaybooksPublic:
    rows, total = await service.list_playbooks(session=session, limit=limit, offset=offset)
    items = [PlaybookPublic.model_validate(p, from_attributes=True) for p in rows]
    return PlaybooksPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/playbooks", response_model=PlaybookPublic, status_code=status.HTTP_201_CREATED, tags=["playbooks"])
async def create_playbook(data: PlaybookCreate, session: SessionDep) -> PlaybookPublic:
    playbook = await service.create_playbook(session=session, data=data)
    await session.commit()
    return PlaybookPublic.model_validate(playbook, from_attributes=True)


@router.get("/playbooks/{playbook_id}", response_model=PlaybookPublic, tags=["playbooks"])
async def get_playbook(playbook_id: str, session: SessionDep) -> PlaybookPublic:
    playbook = await service.get_playbook(session=session, playbook_id=playbook_id)
    return PlaybookPublic.model_validate(playbook, from_attributes=True)


@router.patch("/playbooks/{playbook_id}", response_model=PlaybookPublic, tags=["playbooks"])
async def update_playbook(playbook_id: str, data: PlaybookUpdate, session: SessionDep) -> PlaybookPublic:
    playbook = await service.update_playbook(session=session, playbook_id=playbook_id, data=data)
    await session.commit()
    return PlaybookPublic.model_validate(playbook, from_attributes=True)


# ---- tasks ---------------------------------------------------------------------------------------


@router.get("/tasks", response_model=TasksPublic, tags=["tasks"])
async def list_tasks(
    session: SessionDep,
    owner: Annotated[list[str] | None, Query(description="account manager; repeat to match any of several")] = None,
    status: TaskStatus | None = None,
    overdue: Annotated[bool | None, Query(description="true: open and past due")] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    alert_id: Annotated[str | None, Query(min_length=1, max_length=36)] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> TasksPublic:
    """Tasks, soonest due first."""
    now = utc_now()
    rows, total = await service.list_tasks(
        session=session,
        owners=owner or (),
        status=status,
        overdue=overdue,
        customer_id=customer_id,
        alert_id=alert_id,
        now=now,
        limit=limit,
        offset=offset,
    )
    return TasksPublic(items=[TaskPublic.of(t, now) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskPublic, tags=["tasks"])
async def get_task(task_id: str, session: SessionDep) -> TaskPublic:
    """One task. The gateway reads it to decide whether an agent may see or complete it."""
    return TaskPublic.of(await service.get_task(session=session, task_id=task_id), utc_now())


@router.post("/tasks/{task_id}/complete", response_model=TaskPublic, tags=["tasks"])
async def complete_task(
    task_id: str, session: SessionDep, data: Annotated[TaskComplete | None, Body()] = None
) -> TaskPublic:
    task = await service.complete_task(session=session, task_id=task_id, note=data.note if data else None)
    await session.commit()
    return TaskPublic.of(task, utc_now())


# ---- metrics -------------------------------------------------------------------------------------


@router.get("/retention/metrics", response_model=RetentionMetricsPublic, response_model_by_alias=True, tags=["metrics"])
async def retention_metrics(
    request: Request,
    session: SessionDep,
    from_: Annotated[datetime | None, Query(alias="from", description="default: 90 days before to")] = None,
    to: Annotated[datetime | None, Query(description="default: now")] = None,
    group_by: Literal["tier", "segment", "rule"] | None = None,
) -> RetentionMetricsPublic:
    """Churn, retention and save rates, alert precision and recall, warning time and uplift, for [from, to)."""
    settings: RetentionSettings = request.app.state.settings
    end = to or utc_now()
    start = from_ or end - timedelta(days=90)
    overall, groups = await service.metrics(
        session=session,
        start=start,
        end=end,
        group_by=group_by,
        lookback=timedelta(days=settings.warning_lookback_days),
    )
    return RetentionMetricsPublic.model_validate(
        {
            "from_": start,
            "to": end,
            "group_by": group_by,
            "overall": asdict(overall),
            "groups": [asdict(g) for g in groups],
        }
    )


# ---- webhooks ------------------------------------------------------------------------------------


@router.get("/webhooks", response_model=WebhooksPublic, tags=["webhooks"])
async def list_webhooks(session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0) -> WebhooksPublic:
    rows, total = await service.list_webhooks(session=session, limit=limit, offset=offset)
    items = [WebhookPublic.model_validate(h, from_attributes=True) for h in rows]
    return WebhooksPublic(items=items, total=total, limit=limit, offset=offset)


@router.post("/webhooks", response_model=WebhookPublic, status_code=status.HTTP_201_CREATED, tags=["webhooks"])
async def create_webhook(data: WebhookCreate, request: Request, session: SessionDep) -> WebhookPublic:
    """Subscribe a URL to retention events; deliveries are signed with the secret (never returned).

    The URL must reach a public address (or one in RETENTION_WEBHOOK_ALLOWED_NETWORKS); else 422 on url."""
    settings: RetentionSettings = request.app.state.settings
    hook = await service.create_webhook(
        session=session, data=data, allow=targets.networks(settings.webhook_allowed_networks)
    )
    await session.commit()
    return WebhookPublic.model_validate(hook, from_attributes=True)


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["webhooks"])
async def delete_webhook(webhook_id: str, session: SessionDep) -> Response:
    await service.delete_webhook(session=session, webhook_id=webhook_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveriesPublic, tags=["webhooks"])
async def list_deliveries(
    webhook_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> DeliveriesPublic:
    """The delivery log, newest first: status, attempts, last HTTP status or error, next attempt."""
    rows, total = await service.list_deliveries(session=session, webhook_id=webhook_id, limit=limit, offset=offset)
    items = [DeliveryPublic.model_validate(d, from_attributes=True) for d in rows]
    return DeliveriesPublic(items=items, total=total, limit=limit, offset=offset)
