"""Retention domain functions: they change state and enqueue events in the caller's transaction, never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, or_, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from servicekit.db import (
    KEYS,
    assign,
    chunks,
    dialect_insert,
    for_each_key,
    hold_until_commit,
    insert_rows,
    on_postgres,
    take_held,
    update_at_commit,
)
from servicekit.events.contracts.common import Severity
from servicekit.events.contracts.customer import (
    CustomerCreated,
    CustomerErased,
    CustomerStatusChanged,
    CustomerUpdated,
)
from servicekit.events.contracts.erasure import ErasureConfirmed
from servicekit.events.contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from servicekit.events.contracts.retention import (
    AlertEvent,
    AlertRaised,
    AlertResolved,
    AlertUpdated,
    TaskCompleted,
    TaskCreated,
    TaskEvent,
)
from servicekit.events.contracts.scoring import Factor, ScoreUpdated
from servicekit.events.envelope import EventData, Received
from servicekit.events.registry import REGISTRY
from servicekit.inbox import batch_customer_ids
from servicekit.outbox import enqueue
from servicekit.outbox.writer import write_at_commit
from servicekit.pagination import MAX_PAGE
from servicekit.problems import Problem, field_error
from servicekit.types import as_utc
from services.retention import outcomes, rules, sequence_engine, targets, touches
from services.retention.catalog import ActivePlaybook, catalog, params_of
from services.retention.catalog import changed as catalog_changed
from services.retention.models import (
    ACKNOWLEDGE_FROM,
    EVENT_IDS_KEPT,
    RESOLVE_FROM,
    SNOOZE_FROM,
    Alert,
    AlertChange,
    AlertRule,
    AlertStatus,
    Customer,
    CustomerScore,
    DeliveryStatus,
    Outcome,
    Playbook,
    PlaybookCreate,
    PlaybookUpdate,
    RuleCreate,
    RuleParamsBody,
    RuleUpdate,
    Signal,
    StatusChange,
    Task,
    TaskStatus,
    Webhook,
    WebhookCreate,
    WebhookDelivery,
    new_id,
    open_slot,
    utc_now,
)
from services.retention.playbooks import in_control_group, plan_tasks
from services.retention.rules import Context, Rule, RuleKind, ScorePoint, Trigger, value_at_risk, worse

WATCHED = (ScoreUpdated, ComplaintOpened, ComplaintOverdue, SurveyAnswered)
TIER_ATTRIBUTES = ("tier", "value_tier")

# ---- publishing: outbox, webhook deliveries and the SSE change log, all in the caller's transaction


async def publish(session: AsyncSession, *events: EventData) -> None:
    """Enqueue events for Kafka, queue a delivery per subscribed webhook, and log alert changes for SSE.

    Everything is written in the caller's transaction, so a change is never announced without being
    stored, nor stored without being announced.
    """
    envelopes = await enqueue(session, *events)
    subscribers = (await catalog(session)).subscribers
    changes = []
    for data, envelope in zip(events, envelopes, strict=True):
        body = envelope.to_json().decode()
        for hook in subscribers:
            if hook.wants(envelope.type):
                session.add(
                    WebhookDelivery(webhook_id=hook.id, event_id=envelope.id, event_type=envelope.type, payload=body)
                )
        if isinstance(data, AlertEvent):
            changes.append(
                {
                    "alert_id": data.alert_id,
                    "event_type": envelope.type,
                    "at": utc_now(),
                    "data": data.model_dump(mode="json"),
                }
            )
    if changes:
        # An append-only log nothing reads back before commit: plain rows, one statement per transaction.
        hold_until_commit(session, _ALERT_CHANGES, changes, insert_rows(AlertChange.__table__))  # type: ignore[attr-defined]


_ALERT_CHANGES = "retention.alert_changes"


# Per-transaction caches (session.info dies with the session, and every transaction has its own session).
# A consumer batch locks the same customers' rows many times over (rules, playbooks and webhooks: catalog.py).
_UNRESOLVED_IN_TRANSACTION = "retention.unresolved"
_SCORES_IN_TRANSACTION = "retention.scores"  # customer id -> locked latest score, None: no row yet
_REPLICAS_IN_TRANSACTION = "retention.replicas"  # customer id -> locked replica, None: no row yet
# Event id -> whether preload stored its signal now (False: stored before); removed once the event is applied.
_SIGNALS_IN_TRANSACTION = "retention.signals"
_HISTORY_IN_TRANSACTION = "retention.history"  # _BatchHistory: score signals read once for the batch


async def preload(session: AsyncSession, events: Sequence[Received[Any]]) -> None:
    """Store a consumer batch's signals, and lock and load the rows its events will touch, in a few statements.

    The consumer calls this before applying the batch; the per-event lookups then find the replicas,
    latest scores and unresolved alerts in the transaction's caches instead of a round trip each.
    Sorted ids, so two transactions lock in the same order.
    """
    write_at_commit(session)  # the batch's events go to the outbox in one statement
    watched = [e for e in events if isinstance(e.data, WATCHED)]
    if watched:
        stored = await _store_signals(session, watched)
        session.info.setdefault(_SIGNALS_IN_TRANSACTION, {}).update({e.id: e.id in stored for e in watched})
        await _preload_history(session, [e for e in watched if e.id in stored])
    ids = sorted(batch_customer_ids(events))
    if not ids:
        return
    replicas: dict[str, Customer | None] = session.info.setdefault(_REPLICAS_IN_TRANSACTION, {})
    scores: dict[str, CustomerScore | None] = session.info.setdefault(_SCORES_IN_TRANSACTION, {})
    unresolved: dict[str, list[Alert]] = session.info.setdefault(_UNRESOLVED_IN_TRANSACTION, {})
    await _lock_by_customer(session, Customer, replicas, ids)
    await _lock_by_customer(session, CustomerScore, scores, ids)
    fresh = [i for i in ids if i not in unresolved]
    if fresh:
        for i in fresh:
            unresolved[i] = []
        for alert in (await session.execute(_unresolved_alerts_of(on_postgres(session)), {KEYS: fresh})).scalars():
            unresolved[alert.customer_id].append(alert)


# The batch reads, each built once per process (see for_each_key).
@cache
def _unresolved_alerts_of(postgres: bool) -> Any:
    query = select(Alert).where(Alert.open_slot.is_not(None)).with_for_update()
    return for_each_key(query, Alert.customer_id, postgres=postgres)


@cache
def _locked_rows(model: type[Customer] | type[CustomerScore], postgres: bool) -> Any:
    return for_each_key(select(model).with_for_update(), model.customer_id, postgres=postgres)


@cache
def _score_signals_in_window(postgres: bool) -> Any:
    # Only the two values the rules read, kept in columns of their own: a signal's whole document is ten
    # times larger and would be parsed again on every read, and a busy customer has many in the window.
    columns = (Signal.customer_id, Signal.event_id, Signal.at, Signal.churn_risk, Signal.lifecycle_stage)
    in_window = (
        Signal.event_type == ScoreUpdated.event_type,
        Signal.at >= bindparam("since"),
        Signal.at < bindparam("until"),
    )
    return for_each_key(select(*columns).where(*in_window), Signal.customer_id, postgres=postgres)


async def _lock_by_customer(
    session: AsyncSession, model: type[Customer] | type[CustomerScore], cache: dict[str, Any], ids: Sequence[str]
) -> None:
    """Lock and load the customers' rows of `model` not in `cache` yet, key by key; None for a missing row.

    Key by key (for_each_key): with customer_id IN (...), generic plans scanned whole tables.
    """
    fresh = [i for i in ids if i not in cache]
    if fresh:
        rows = await session.execute(_locked_rows(model, on_postgres(session)), {KEYS: fresh})
        found = {row.customer_id: row for row in rows.scalars()}
        cache.update({i: found.get(i) for i in fresh})


# ---- rules ---------------------------------------------------------------------------------------


def _check_rule(kind: RuleKind, params: RuleParamsBody) -> dict[str, Any]:
    stored = params.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    errors = rules.validate(kind, params_of(stored))
    if errors:
        raise Problem(
            422,
            "Invalid rule",
            "Invalid fields: " + ", ".join(sorted({f for f, _ in errors})),
            code="validation",
            errors=[field_error(f, m) for f, m in errors],
        )
    return stored


async def create_rule(*, session: AsyncSession, data: RuleCreate) -> AlertRule:
    params = _check_rule(data.kind, data.params)
    rule = AlertRule(
        name=data.name,
        kind=data.kind,
        reason=data.reason or rules.DEFAULT_REASON[data.kind],
        severity=data.severity,
        params=params,
        enabled=data.enabled,
    )
    session.add(rule)
    await session.flush()
    return rule


async def get_rule(*, session: AsyncSession, rule_id: str) -> AlertRule:
    rule = await session.get(AlertRule, rule_id)
    if rule is None:
        raise _not_found("Rule", rule_id)
    return rule


async def list_rules(
    *, session: AsyncSession, enabled: bool | None = None, kind: RuleKind | None = None, limit: int, offset: int
) -> tuple[Sequence[AlertRule], int]:
    conditions = []
    if enabled is not None:
        conditions.append(AlertRule.enabled.is_(enabled))
    if kind is not None:
        conditions.append(AlertRule.kind == str(kind))
    query = select(AlertRule).where(*conditions).order_by(AlertRule.created_at, AlertRule.id)
    return await _page(session, query, conditions, AlertRule, limit, offset)


async def update_rule(*, session: AsyncSession, rule_id: str, data: RuleUpdate) -> AlertRule:
    rule = await get_rule(session=session, rule_id=rule_id)
    if data.params is not None:
        rule.params = _check_rule(RuleKind(rule.kind), data.params)
    for name in ("name", "reason", "severity", "enabled"):
        value = getattr(data, name)
        if value is not None:
            setattr(rule, name, value)
    rule.updated_at = utc_now()
    await session.flush()
    return rule


async def set_rule_enabled(*, session: AsyncSession, rule_id: str, enabled: bool) -> AlertRule:
    rule = await get_rule(session=session, rule_id=rule_id)
    if rule.enabled != enabled:
        rule.enabled = enabled
        rule.updated_at = utc_now()
        await session.flush()
    return rule


async def delete_rule(*, session: AsyncSession, rule_id: str) -> None:
    """Alerts it raised keep their rule id; the rule stops firing."""
    rule = await get_rule(session=session, rule_id=rule_id)
    await session.delete(rule)
    await session.flush()


async def preview_rule(*, session: AsyncSession, rule: Rule, start: datetime, end: datetime) -> rules.PreviewResult:
    """What the rule would have raised over [start, end) of the stored history; writes nothing."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise Problem(
            422,
            "Invalid period",
            "to must be after from",
            code="validation",
            errors=[field_error("to", "must be after from")],
        )
    # Scores before the period serve as history for risk_jump and lifecycle_decline.
    history_from = start - timedelta(days=max(rule.params.within_days or 0, 31))
    rows = (
        await session.execute(
            select(Signal)
            .where(Signal.event_type == rules.WATCHES[rule.kind], Signal.at >= history_from, Signal.at < end)
            .order_by(Signal.at, Signal.id)
        )
    ).scalars()
    signals = [rules.Signal(r.customer_id, r.at, REGISTRY.model(r.event_type).model_validate(r.data)) for r in rows]
    # The account-managed tier overrides; a score carries its own tier otherwise (tier_of).
    overrides = await session.execute(select(Customer.customer_id, Customer.tier).where(Customer.tier.is_not(None)))
    tiers: dict[str, str | None] = dict(overrides.all())
    if rules.WATCHES[rule.kind] != ScoreUpdated.event_type:
        latest = await session.execute(select(CustomerScore.customer_id, CustomerScore.value_tier))
        for customer_id, tier in latest:
            tiers.setdefault(customer_id, tier)
    return rules.preview(rule, signals, start=start, end=end, tiers=tiers)


# ---- consumed events -> alerts -------------------------------------------------------------------


async def handle_event(
    *,
    session: AsyncSession,
    event: Received[ScoreUpdated | ComplaintOpened | ComplaintOverdue | SurveyAnswered],
    raise_alerts: bool = True,
) -> list[Alert]:
    """Record the event, evaluate the stored rules on it, raise or update alerts; returns the alerts it changed.

    raise_alerts=False (history older than the horizon, see history.py): recorded, no rule evaluated."""
    data = event.data
    if not await _record_signal(session, event):
        return []  # the same event under another offset: already applied
    if isinstance(data, ScoreUpdated) and not await record_score(session=session, score=data):
        return []  # an older score than one already seen: it must neither raise nor refresh anything
    if not raise_alerts:
        return []
    active = (await catalog(session)).rules
    if not active:
        return []
    context = await _context(session, data, active)
    changed = []
    for trigger in rules.evaluate(data, active, context):
        alert = await apply_trigger(
            session=session, customer_id=data.customer_id, trigger=trigger, event_id=event.id, rules_by_id=active
        )
        if alert is not None:
            changed.append(alert)
    return changed


_SIGNAL_TIME = {
    ScoreUpdated: lambda d: d.computed_at,
    ComplaintOpened: lambda d: d.opened_at,
    ComplaintOverdue: lambda d: d.due_at,
    SurveyAnswered: lambda d: d.answered_at,
}


def _signal_row(event: Received[Any]) -> dict[str, Any]:
    data = event.data
    score = data.current if isinstance(data, ScoreUpdated) else None
    return {
        "event_id": event.id,
        "event_type": data.event_type,
        "customer_id": data.customer_id,
        "at": as_utc(_SIGNAL_TIME[type(data)](data)),
        "data": data.model_dump(mode="json"),
        "churn_risk": score.churn_risk if score else None,
        "lifecycle_stage": score.lifecycle_stage if score else None,
    }


async def _store_signals(session: AsyncSession, events: Sequence[Received[Any]]) -> set[str]:
    """Store the events' signals (a statement per chunk), skipping event ids stored already; the ids stored now."""
    table = Signal.__table__  # type: ignore[attr-defined]
    stored: set[str] = set()
    # Rows as parameters, not .values(rows): the statement is compiled once and cached, whatever the batch size.
    query = (
        dialect_insert(session)(table)
        .on_conflict_do_nothing(index_elements=[table.c.event_id])
        .returning(table.c.event_id)
    )
    for chunk in chunks(events):
        stored.update((await session.execute(query, [_signal_row(e) for e in chunk])).scalars())
    return stored


async def _record_signal(session: AsyncSession, event: Received[Any]) -> bool:
    """Store the signal; False if this event id is stored already (stored by preload with its batch, if it was)."""
    preloaded: dict[str, bool] = session.info.get(_SIGNALS_IN_TRANSACTION, {})
    if event.id in preloaded:
        return preloaded.pop(event.id)
    return bool(await _store_signals(session, [event]))


async def _context(session: AsyncSession, data: EventData, active: Sequence[Rule]) -> Context:
    customer_id: str = data.customer_id  # type: ignore[attr-defined]
    replica = await _known_replica(session, customer_id)
    tier = replica.tier if replica is not None else None
    if tier is None and not isinstance(data, ScoreUpdated):
        latest = await _known_score(session, customer_id)
        tier = latest.value_tier if latest is not None else None
    history: tuple[ScorePoint, ...] = ()
    if isinstance(data, ScoreUpdated) and rules.needs_history(data, active):
        at = as_utc(data.computed_at)
        since = at - _history_window(active)
        # Later events of this batch are stored already (by preload) but must not count as history yet.
        unapplied: dict[str, bool] = session.info.get(_SIGNALS_IN_TRANSACTION, {})
        history = tuple(
            ScorePoint(r.at, r.churn_risk, r.lifecycle_stage)
            for r in await _score_signals(session, customer_id, since, at)
            if since <= r.at < at and not unapplied.get(r.event_id)
        )
    return Context(tier=tier, history=history)


def _history_window(active: Sequence[Rule]) -> timedelta:
    return timedelta(days=max([r.params.within_days or 0 for r in active if r.kind == RuleKind.risk_jump] + [1]))


@dataclass(frozen=True, slots=True)
class _ScoreSignal:
    event_id: str
    at: datetime
    churn_risk: float
    lifecycle_stage: str | None


async def _read_score_signals(
    session: AsyncSession, customer_ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, list[_ScoreSignal]]:
    """The customers' stored score signals in [since, until), by customer (every customer id a key)."""
    found: dict[str, list[_ScoreSignal]] = {i: [] for i in customer_ids}
    query = _score_signals_in_window(on_postgres(session))
    params = {KEYS: list(customer_ids), "since": since, "until": until}
    with session.no_autoflush:  # signals are written with Core, never pending in the session
        for customer_id, event_id, at, risk, stage in await session.execute(query, params):
            found[customer_id].append(_ScoreSignal(event_id, as_utc(at), risk, stage))
    return found


async def _score_signals(
    session: AsyncSession, customer_id: str, since: datetime, until: datetime
) -> list[_ScoreSignal]:
    """The customer's score signals in [since, until): from preload's read for the batch if it covers them."""
    cached = session.info.get(_HISTORY_IN_TRANSACTION)
    if cached is not None and customer_id in cached.signals and cached.since <= since and until <= cached.until:
        return cached.signals[customer_id]
    return (await _read_score_signals(session, [customer_id], since, until))[customer_id]


@dataclass(frozen=True, slots=True)
class _BatchHistory:
    since: datetime
    until: datetime
    signals: dict[str, list[_ScoreSignal]]


async def _preload_history(session: AsyncSession, events: Sequence[Received[Any]]) -> None:
    """One read of the score history every score of the batch that needs one can look at."""
    active = (await catalog(session)).rules
    needing = [e.data for e in events if isinstance(e.data, ScoreUpdated) and rules.needs_history(e.data, active)]
    if not needing:
        return
    times = [as_utc(d.computed_at) for d in needing]
    since, until = min(times) - _history_window(active), max(times)
    ids = sorted({d.customer_id for d in needing})
    signals = await _read_score_signals(session, ids, since, until)
    session.info[_HISTORY_IN_TRANSACTION] = _BatchHistory(since, until, signals)


async def record_score(*, session: AsyncSession, score: ScoreUpdated) -> bool:
    """Keep the customer's latest score and refresh its unresolved alerts (silently) with the new risk.

    Returns False if the score is older than the one already recorded (out of order), and ignores it.
    """
    computed_at = as_utc(score.computed_at)
    latest = await _locked_score(session, score.customer_id)
    if latest is not None and as_utc(latest.as_of) > computed_at:
        return False
    if latest is None:
        latest = CustomerScore(customer_id=score.customer_id, churn_risk=score.current.churn_risk)
        session.add(latest)
        session.info.setdefault(_SCORES_IN_TRANSACTION, {})[score.customer_id] = latest
    current = score.current
    update_at_commit(
        session,
        latest,
        churn_risk=current.churn_risk,
        clv=current.clv,
        value_at_risk=value_at_risk(current),
        value_tier=current.value_tier,
        p_alive=current.p_alive,
        lifecycle_stage=current.lifecycle_stage,
        as_of=computed_at,
        updated_at=utc_now(),
    )
    # Written at commit, with the batch's other scores and alert changes: later events of the batch read
    # these rows from the transaction's caches.
    for alert in await _unresolved_alerts(session, score.customer_id):
        values = _risk_values(alert, latest)
        # Auto-save clock: starts when the risk falls below the alert's threshold, stops when it rises again.
        if alert.recover_below is not None:
            below = current.churn_risk < alert.recover_below
            since = (alert.risk_below_since or computed_at) if below else None
            if since != alert.risk_below_since:
                values["risk_below_since"] = since
        update_at_commit(session, alert, **values)
    return True


async def _locked_score(session: AsyncSession, customer_id: str) -> CustomerScore | None:
    """The customer's latest score, locked; locked once per transaction (the lock and the row stay ours)."""
    scores: dict[str, CustomerScore | None] = session.info.setdefault(_SCORES_IN_TRANSACTION, {})
    if customer_id not in scores:
        scores[customer_id] = await session.get(CustomerScore, customer_id, with_for_update=True)
    return scores[customer_id]


async def _known_score(session: AsyncSession, customer_id: str) -> CustomerScore | None:
    """The latest score for reading: the transaction's locked one if it has it."""
    scores: dict[str, CustomerScore | None] = session.info.get(_SCORES_IN_TRANSACTION, {})
    if customer_id in scores:
        return scores[customer_id]
    return await session.get(CustomerScore, customer_id)


async def _known_replica(session: AsyncSession, customer_id: str) -> Customer | None:
    """The replica for reading: the transaction's locked one if it has it."""
    replicas: dict[str, Customer | None] = session.info.get(_REPLICAS_IN_TRANSACTION, {})
    if customer_id in replicas:
        return replicas[customer_id]
    return await session.get(Customer, customer_id)


async def apply_trigger(
    *,
    session: AsyncSession,
    customer_id: str,
    trigger: Trigger,
    event_id: str,
    rules_by_id: Sequence[Rule] = (),
) -> Alert | None:
    """Raise the alert for (customer, reason), or count one more trigger on the unresolved one.

    Returns the alert, or None when this event was already applied to it (a redelivery under a new
    offset, on top of the inbox's own de-duplication).
    """
    slot = open_slot(customer_id, trigger.reason)
    alert = next((a for a in await _unresolved_alerts(session, customer_id) if a.open_slot == slot), None)
    latest = await _known_score(session, customer_id)
    observed_at = as_utc(trigger.observed_at)
    if alert is None:
        replica = await _known_replica(session, customer_id)
        rule = next((r for r in rules_by_id if r.id == trigger.rule_id), None)
        alert = Alert(
            customer_id=customer_id,
            reason=trigger.reason,
            rule_id=trigger.rule_id or None,
            severity=trigger.severity,
            first_triggered_at=observed_at,
            last_triggered_at=observed_at,
            factors=_factors(trigger.factors),
            event_ids=[event_id],
            open_slot=slot,
            owner=replica.owner if replica else None,
            segment=replica.segment if replica else None,
            tier=(replica.tier if replica else None) or (latest.value_tier if latest else None),
            # Only a risk-threshold alert can be "saved" by the risk staying low: others have no threshold.
            recover_below=rule.params.threshold if rule and rule.kind == RuleKind.churn_risk_above else None,
        )
        assign(alert, **_risk_values(alert, latest))
        playbook = (await catalog(session)).playbooks.get(trigger.reason)
        alert.control = playbook is not None and in_control_group(alert.id, playbook.control_share)
        session.add(alert)
        # Known to the transaction's list at once, so a second trigger for the same slot finds this alert.
        session.info[_UNRESOLVED_IN_TRANSACTION][customer_id].append(alert)
        await publish(session, alert_event(AlertRaised, alert))
        if playbook is not None and not alert.control:
            await create_tasks(
                session=session, playbook=playbook, customer_id=customer_id, alert_id=alert.id, tier=alert.tier
            )
        return alert

    if event_id in alert.event_ids:
        return None
    values: dict[str, Any] = {
        "trigger_count": alert.trigger_count + 1,
        "severity": worse(alert.severity, trigger.severity),  # an unresolved alert only escalates
        "first_triggered_at": min(as_utc(alert.first_triggered_at), observed_at),
        # A new list, never the stored one changed in place (the raised event may still hold it).
        "event_ids": [*alert.event_ids, event_id][-EVENT_IDS_KEPT:],
        "updated_at": utc_now(),
    }
    if observed_at >= as_utc(alert.last_triggered_at):
        values.update(last_triggered_at=observed_at, factors=_factors(trigger.factors))
    update_at_commit(session, alert, **{**values, **_risk_values(alert, latest)})
    # A snoozed alert takes the new evidence without paging anyone again.
    if alert.status != AlertStatus.snoozed:
        await publish(session, alert_event(AlertUpdated, alert))
    return alert


def _risk_values(alert: Alert, score: CustomerScore | None) -> dict[str, Any]:
    """The latest churn risk and value at risk for the alert, {} if it has them or newer ones already.

    A change of either value also moves the alert's updated_at.
    """
    if score is None:
        return {}
    as_of = as_utc(score.as_of)
    if alert.risk_as_of is not None and as_utc(alert.risk_as_of) > as_of:
        return {}
    values: dict[str, Any] = {"churn_risk": score.churn_risk, "value_at_risk": score.value_at_risk, "risk_as_of": as_of}
    if (alert.churn_risk, alert.value_at_risk) != (score.churn_risk, score.value_at_risk):
        values["updated_at"] = utc_now()
    return values


def _factors(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in factors]


async def _unresolved_alerts(session: AsyncSession, customer_id: str) -> list[Alert]:
    """The customer's unresolved alerts, locked; read once per transaction.

    The list is kept current by apply_trigger (the only place alerts are created) and filtered on the
    way out (resolving clears open_slot), so later events of the batch need no further round trip.
    """
    known: dict[str, list[Alert]] = session.info.setdefault(_UNRESOLVED_IN_TRANSACTION, {})
    alerts = known.get(customer_id)
    if alerts is None:
        query = select(Alert).where(Alert.customer_id == customer_id, Alert.open_slot.is_not(None)).with_for_update()
        alerts = known[customer_id] = list((await session.execute(query)).scalars().all())
    return [a for a in alerts if a.open_slot is not None]


def alert_event(event_cls: type[AlertEvent], alert: Alert, **extra: Any) -> AlertEvent:
    return event_cls(
        alert_id=alert.id,
        customer_id=alert.customer_id,
        reason=alert.reason,
        severity=alert.severity,
        status=alert.status,
        trigger_count=alert.trigger_count,
        churn_risk=alert.churn_risk,
        value_at_risk=alert.value_at_risk,
        owner=alert.owner,
        factors=[Factor.model_validate(f) for f in alert.factors],
        event_ids=list(alert.event_ids),
        at=utc_now(),
        rule_id=alert.rule_id,
        tier=alert.tier,
        segment=alert.segment,
        control=alert.control,
        snoozed_until=alert.snoozed_until,
        **extra,
    )


# ---- reading alerts ------------------------------------------------------------------------------


async def get_alert(*, session: AsyncSession, alert_id: str, for_update: bool = False) -> Alert:
    query = select(Alert).where(Alert.id == alert_id)
    if for_update:
        query = query.with_for_update()
    alert = (await session.execute(query)).scalar_one_or_none()
    if alert is None:
        raise _not_found("Alert", alert_id, "unknown alert")
    return alert


async def list_alerts(
    *,
    session: AsyncSession,
    customer_id: str | None = None,
    statuses: Sequence[AlertStatus] = (),
    reasons: Sequence[str] = (),
    severities: Sequence[Severity] = (),
    owners: Sequence[str] = (),
    tiers: Sequence[str] = (),
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Alert], int]:
    """One page of matching alerts by priority (value at risk, unknown last), then most recent; and the total."""
    conditions = []
    if customer_id is not None:
        conditions.append(Alert.customer_id == customer_id)
    for column, values in (
        (Alert.status, statuses),
        (Alert.reason, reasons),
        (Alert.severity, severities),
        (Alert.owner, owners),
        (Alert.tier, tiers),
    ):
        if values:
            conditions.append(column.in_([str(v) for v in values]))
    query = (
        select(Alert)
        .where(*conditions)
        # id last: a total order, so pages neither repeat nor skip rows
        .order_by(Alert.value_at_risk.desc().nulls_last(), Alert.last_triggered_at.desc(), Alert.id)
    )
    return await _page(session, query, conditions, Alert, limit, offset)


async def _page(
    session: AsyncSession, query: Any, conditions: list[Any], table: Any, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    total = (await session.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one()
    rows = (await session.execute(query.limit(min(limit, MAX_PAGE)).offset(offset))).scalars().all()
    return rows, total


# ---- alert actions -------------------------------------------------------------------------------


async def acknowledge_alert(*, session: AsyncSession, alert_id: str, owner: str | None = None) -> Alert:
    """Someone is on it. Repeating the call changes nothing; naming another owner reassigns the alert."""
    alert = await get_alert(session=session, alert_id=alert_id, for_update=True)
    if alert.status == AlertStatus.acknowledged:
        if owner is None or owner == alert.owner:
            return alert
    elif alert.status not in ACKNOWLEDGE_FROM:
        raise _conflict(alert, "acknowledged", ACKNOWLEDGE_FROM)
    now = utc_now()
    alert.status = AlertStatus.acknowledged
    alert.acknowledged_at = alert.acknowledged_at or now
    alert.snoozed_until = None
    if owner is not None:
        alert.owner = owner
    alert.updated_at = now
    await session.flush()
    await publish(session, alert_event(AlertUpdated, alert))
    return alert


async def snooze_alert(
    *, session: AsyncSession, alert_id: str, until: datetime, reason: str, now: datetime | None = None
) -> Alert:
    """Quiet until `until`: new triggers update it silently; then it is open again (wake_snoozed)."""
    now = now or utc_now()
    until = as_utc(until)
    if until <= now:
        raise Problem(
            422,
            "Invalid snooze",
            "until must be in the future",
            code="validation",
            errors=[field_error("until", "must be in the future")],
        )
    alert = await get_alert(session=session, alert_id=alert_id, for_update=True)
    if alert.status not in SNOOZE_FROM:
        raise _conflict(alert, "snoozed", SNOOZE_FROM)
    alert.status = AlertStatus.snoozed
    alert.snoozed_until = until
    alert.snooze_reason = reason
    alert.updated_at = now
    await session.flush()
    await publish(session, alert_event(AlertUpdated, alert))
    return alert


async def wake_snoozed(*, session: AsyncSession, now: datetime | None = None) -> list[Alert]:
    """Snoozed alerts whose date has come are open again (and announced once)."""
    now = now or utc_now()
    due = (
        (
            await session.execute(
                select(Alert)
                .where(Alert.status == AlertStatus.snoozed, Alert.snoozed_until <= now)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for alert in due:
        alert.status = AlertStatus.open
        alert.snoozed_until = None
        alert.updated_at = now
    await session.flush()
    for alert in due:
        await publish(session, alert_event(AlertUpdated, alert))
    return list(due)


async def resolve_alert(
    *, session: AsyncSession, alert_id: str, outcome: Outcome, note: str | None = None, alert: Alert | None = None
) -> Alert:
    """Close the alert with its outcome; this frees the (customer, reason) slot for a new alert."""
    alert = alert or await get_alert(session=session, alert_id=alert_id, for_update=True)
    if alert.status not in RESOLVE_FROM:
        raise _conflict(alert, "resolved", RESOLVE_FROM)
    now = utc_now()
    alert.status = AlertStatus.resolved
    alert.outcome = outcome
    alert.outcome_note = note
    alert.resolved_at = now
    alert.snoozed_until = None
    alert.open_slot = None
    alert.updated_at = now
    await session.flush()
    # The note stays here: free text may name people, and the Kafka log cannot be erased.
    await publish(session, alert_event(AlertResolved, alert, outcome=outcome))
    return alert


async def auto_save(*, session: AsyncSession, after: timedelta, now: datetime | None = None) -> list[Alert]:
    """Risk alerts whose risk has stayed below their threshold for `after` close as saved."""
    now = now or utc_now()
    due = (
        (
            await session.execute(
                select(Alert)
                .where(Alert.open_slot.is_not(None), Alert.risk_below_since <= now - after)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for alert in due:
        days = after.total_seconds() / 86400
        note = f"Churn risk stayed below {alert.recover_below:.0%} for {days:g} days"
        await resolve_alert(session=session, alert_id=alert.id, outcome=Outcome.saved, note=note, alert=alert)
    return list(due)


def _conflict(alert: Alert, target: str, allowed: frozenset[AlertStatus]) -> Problem:
    allowed_text = ", ".join(sorted(allowed))
    return Problem(
        409,
        "Invalid alert transition",
        f"Alert {alert.id} is {alert.status}; only {allowed_text} alerts can be {target}.",
        code="invalid_transition",
        errors=[field_error("status", f"is {alert.status}")],
        alert_id=alert.id,
        current_status=str(alert.status),
    )


def _not_found(what: str, item_id: str, message: str | None = None) -> Problem:
    return Problem(
        404,
        f"{what} not found",
        f"No {what.lower()} with id {item_id}",
        code="not_found",
        errors=[field_error("id", message or f"unknown {what.lower()}")],
    )


# ---- playbooks and tasks -------------------------------------------------------------------------


async def create_tasks(
    *, session: AsyncSession, playbook: ActivePlaybook, customer_id: str, alert_id: str | None, tier: str | None
) -> None:
    """The playbook's tasks for the customer's own account manager, due from now.

    Written as plain rows, for the whole transaction in one statement at commit (a consumer batch raises
    hundreds of alerts, each with its playbook's tasks). A read of tasks in the same transaction goes
    through _stored_tasks, which writes them first.
    """
    replica = await _known_replica(session, customer_id)
    owner = replica.owner if replica is not None else None
    if sequence_engine.enrols(playbook, tier):
        # The playbook has a sequence for this tier: its steps run over time (sequence_engine.py).
        await sequence_engine.enrol(
            session, playbook=playbook, customer_id=customer_id, alert_id=alert_id, tier=tier, owner=owner
        )
        return
    now = utc_now()
    rows = [
        {
            "id": new_id(),
            "alert_id": alert_id,
            "customer_id": customer_id,
            "reason": playbook.reason,
            "action": planned.action,
            "owner": owner,
            "status": TaskStatus.open,
            "due_at": planned.due_at,
            "note": None,
            "completed_at": None,
            "created_at": now,
        }
        for planned in plan_tasks(playbook.steps, tier=tier, now=now)
    ]
    # Steps that contact the customer pass consent and the contact policy first; blocks are recorded.
    rows, touch_events = await touches.screen(session, rows, tier=tier) if rows else (rows, [])
    if not rows:
        return
    hold_until_commit(session, _NEW_TASKS, rows, insert_rows(Task.__table__))  # type: ignore[attr-defined]
    await publish(session, *(task_event(TaskCreated, SimpleNamespace(**row)) for row in rows), *touch_events)


_NEW_TASKS = "retention.new_tasks"


def _write_new_tasks_now(session: Session) -> None:
    insert_rows(Task.__table__)(session, take_held(session, _NEW_TASKS))  # type: ignore[attr-defined]


async def _stored_tasks(session: AsyncSession, *conditions: Any) -> Sequence[Task]:
    """Tasks matching the conditions, this transaction's new ones included (written first)."""
    await session.run_sync(_write_new_tasks_now)
    return (await session.execute(select(Task).where(*conditions))).scalars().all()


def task_event(event_cls: type[TaskEvent], task: Task | SimpleNamespace, **extra: Any) -> TaskEvent:
    """The event of a task: a stored Task, or a new task's row (as attributes) not written yet."""
    return event_cls(
        task_id=task.id,
        customer_id=task.customer_id,
        alert_id=task.alert_id,
        reason=task.reason,
        action=task.action,
        owner=task.owner,
        status=task.status,
        due_at=task.due_at,
        at=utc_now(),
        **extra,
    )


async def list_tasks(
    *,
    session: AsyncSession,
    owners: Sequence[str] = (),
    status: TaskStatus | None = None,
    overdue: bool | None = None,
    customer_id: str | None = None,
    alert_id: str | None = None,
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[Task], int]:
    """Tasks, soonest due first; ``owners``: any of them (a manager's team)."""
    now = now or utc_now()
    conditions = []
    if owners:
        conditions.append(Task.owner.in_(list(owners)))
    for column, value in ((Task.customer_id, customer_id), (Task.alert_id, alert_id)):
        if value is not None:
            conditions.append(column == value)
    if status is not None:
        conditions.append(Task.status == str(status))
    if overdue is True:
        conditions += [Task.status == TaskStatus.open, Task.due_at < now]
    elif overdue is False:
        conditions.append(or_(Task.status != TaskStatus.open, Task.due_at >= now))
    query = select(Task).where(*conditions).order_by(Task.due_at, Task.id)
    return await _page(session, query, conditions, Task, limit, offset)


async def get_task(*, session: AsyncSession, task_id: str) -> Task:
    task = await session.get(Task, task_id)
    if task is None:
        raise _not_found("Task", task_id)
    return task


async def complete_task(*, session: AsyncSession, task_id: str, note: str | None) -> Task:
    """Done, with a note. Completing a completed task again changes nothing (a retried request)."""
    task = (await session.execute(select(Task).where(Task.id == task_id).with_for_update())).scalar_one_or_none()
    if task is None:
        raise _not_found("Task", task_id)
    if task.status == TaskStatus.completed:
        return task
    task.status = TaskStatus.completed
    task.note = note
    task.completed_at = utc_now()
    await session.flush()
    await publish(session, task_event(TaskCompleted, task, completed_at=task.completed_at))
    return task


async def list_playbooks(*, session: AsyncSession, limit: int, offset: int) -> tuple[Sequence[Playbook], int]:
    return await _page(session, select(Playbook).order_by(Playbook.reason), [], Playbook, limit, offset)


async def get_playbook(*, session: AsyncSession, playbook_id: str) -> Playbook:
    playbook = await session.get(Playbook, playbook_id)
    if playbook is None:
        raise _not_found("Playbook", playbook_id)
    return playbook


async def create_playbook(*, session: AsyncSession, data: PlaybookCreate) -> Playbook:
    existing = (await session.execute(select(Playbook).where(Playbook.reason == data.reason))).scalar_one_or_none()
    if existing is not None:
        raise Problem(
            409,
            "Playbook exists",
            f"Reason {data.reason} already has playbook {existing.id}; PATCH it instead.",
            code="conflict",
            errors=[field_error("reason", "already has a playbook")],
            playbook_id=existing.id,
        )
    playbook = Playbook(
        reason=data.reason,
        name=data.name,
        steps=[s.model_dump(mode="json") for s in data.steps],
        sequences={k: v.model_dump(mode="json", by_alias=True) for k, v in data.sequences.items()},
        control_share=data.control_share,
        enabled=data.enabled,
    )
    session.add(playbook)
    await session.flush()
    catalog_changed(session)
    return playbook


async def update_playbook(*, session: AsyncSession, playbook_id: str, data: PlaybookUpdate) -> Playbook:
    playbook = await get_playbook(session=session, playbook_id=playbook_id)
    if data.steps is not None:
        playbook.steps = [s.model_dump(mode="json") for s in data.steps]
    if data.sequences is not None:
        playbook.sequences = {k: v.model_dump(mode="json", by_alias=True) for k, v in data.sequences.items()}
    for name in ("name", "control_share", "enabled"):
        value = getattr(data, name)
        if value is not None:
            setattr(playbook, name, value)
    playbook.updated_at = utc_now()
    await session.flush()
    catalog_changed(session)
    return playbook


# ---- customers: replica, status (outcomes), erasure ----------------------------------------------


def _tier_attribute(attributes: dict[str, Any]) -> str | None:
    for name in TIER_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and value.lower() in rules.TIERS:
            return value.lower()
    return None


async def _replica(session: AsyncSession, customer_id: str) -> Customer:
    replicas: dict[str, Customer | None] = session.info.setdefault(_REPLICAS_IN_TRANSACTION, {})
    if customer_id not in replicas:
        replicas[customer_id] = await session.get(Customer, customer_id, with_for_update=True)
    replica = replicas[customer_id]
    if replica is None:
        replica = replicas[customer_id] = Customer(customer_id=customer_id)
        session.add(replica)
    return replica


async def on_customer_created(*, session: AsyncSession, data: CustomerCreated) -> None:
    replica = await _replica(session, data.customer_id)
    if replica.version >= 1 or replica.erased_at is not None:
        return  # an update (or the erasure) overtook the creation: it is newer
    replica.owner = data.owner
    replica.segment = data.segment
    replica.status = replica.status or data.status
    replica.tier = _tier_attribute(data.attributes)
    replica.version = 1
    replica.first_seen = as_utc(data.created_at)
    replica.updated_at = utc_now()
    await session.flush()
    # A complaint can overtake the creation (other topic): hand its unowned work to the owner now.
    if data.owner is not None:
        await _reassign(session, data.customer_id, None, data.owner)
    # An imported customer who had already churned counts in the churn history.
    churned_on = getattr(data, "churned_at", None)
    if data.status == "churned" and churned_on is not None:
        session.add(
            StatusChange(
                event_id=f"{data.customer_id}:imported-churn",
                customer_id=data.customer_id,
                status="churned",
                reason=getattr(data, "churn_reason", None),
                at=_end_of(churned_on),
            )
        )
        await session.flush()


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=UTC)


def churn_time(data: CustomerStatusChanged) -> datetime:
    """When the churn happened: the reported churn day (end of it) if it lies before the change was recorded."""
    at = as_utc(data.changed_at)
    day = getattr(data, "churned_at", None)
    return min(at, _end_of(day)) if data.status == "churned" and day is not None else at


async def on_customer_updated(*, session: AsyncSession, data: CustomerUpdated) -> None:
    replica = await _replica(session, data.customer_id)
    if replica.erased_at is not None or (replica.version and data.version <= replica.version):
        return
    changed = set(data.changed) or {"owner", "segment", "attributes"}
    previous_owner = replica.owner
    if "owner" in changed:
        replica.owner = data.owner
    if "segment" in changed:
        replica.segment = data.segment
    if "attributes" in changed:
        replica.tier = _tier_attribute(data.attributes)
    replica.version = data.version
    replica.updated_at = utc_now()
    await session.flush()
    if replica.owner != previous_owner:
        await _reassign(session, data.customer_id, previous_owner, replica.owner)


async def _reassign(session: AsyncSession, customer_id: str, previous: str | None, owner: str | None) -> None:
    """Personal continuity: the new account manager takes over the work the previous one had.

    Closed work moves too (without events: nothing about it changes but who may see it), since the
    gateway narrows an agent's alert and task lists by this owner: left behind, a previous owner would
    keep listing a customer's resolved alerts and completed tasks after the customer moved away.
    """
    tasks = await _stored_tasks(session, Task.customer_id == customer_id, _same(Task.owner, previous))
    for task in tasks:
        task.owner = owner
    await session.execute(
        update(Alert)
        .where(Alert.customer_id == customer_id, Alert.open_slot.is_(None), _same(Alert.owner, previous))
        .values(owner=owner)
        .execution_options(synchronize_session="fetch")
    )
    for alert in await _unresolved_alerts(session, customer_id):
        if alert.owner == previous:
            alert.owner = owner
            alert.updated_at = utc_now()
            await session.flush()
            await publish(session, alert_event(AlertUpdated, alert))
    await session.flush()


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


async def on_status_changed(*, session: AsyncSession, event: Received[CustomerStatusChanged]) -> None:
    """Record the change (metrics); a churn closes the customer's open alerts as churned and starts win-back."""
    data = event.data
    known = (await session.execute(select(StatusChange.id).where(StatusChange.event_id == event.id))).first()
    if known:
        return
    at = churn_time(data)
    latest_at = (
        await session.execute(select(func.max(StatusChange.at)).where(StatusChange.customer_id == data.customer_id))
    ).scalar_one_or_none()
    session.add(
        StatusChange(
            event_id=event.id,
            customer_id=data.customer_id,
            previous_status=data.previous_status,
            status=data.status,
            reason=data.reason,
            at=at,
        )
    )
    replica = await _replica(session, data.customer_id)
    await session.flush()
    if latest_at is not None and as_utc(latest_at) > at:
        return  # an older change arriving late: history for the metrics, but not the current status
    replica.status = data.status
    replica.updated_at = utc_now()
    if data.status != "churned":
        await session.flush()
        return
    for alert in await _unresolved_alerts(session, data.customer_id):
        await resolve_alert(session=session, alert_id=alert.id, outcome=Outcome.churned, alert=alert)
        for task in await _stored_tasks(session, Task.alert_id == alert.id, Task.status == TaskStatus.open):
            task.status = TaskStatus.cancelled
    playbook = (await catalog(session)).playbooks.get(rules.Reason.churned)
    if playbook is not None:
        latest = await _known_score(session, data.customer_id)
        tier = replica.tier or (latest.value_tier if latest else None)
        await create_tasks(session=session, playbook=playbook, customer_id=data.customer_id, alert_id=None, tier=tier)
    await session.flush()


async def erase_customer(*, session: AsyncSession, data: CustomerErased) -> bool:
    """Remove the free text held about the customer, keep anonymous aggregates, confirm once.

    Kept: alerts, tasks and outcomes with their numbers and codes (the metrics need them); they name
    the customer only by the pseudonymous id. Removed: outcome notes, snooze reasons, task notes, the
    replica's tier attribute. Returns False when the customer was already erased (no second receipt).
    """
    replica = await _replica(session, data.customer_id)
    if replica.erased_at is not None:
        return False
    replica.erased_at = as_utc(data.erased_at)
    replica.tier = None
    replica.updated_at = utc_now()
    alerts = (await session.execute(select(Alert).where(Alert.customer_id == data.customer_id))).scalars().all()
    for alert in alerts:
        alert.outcome_note = None
        alert.snooze_reason = None
    tasks = await _stored_tasks(session, Task.customer_id == data.customer_id)
    for task in tasks:
        task.note = None
    # Factor labels quote feature values (attributes among them): only codes and numbers stay.
    alert_ids = [a.id for a in alerts]
    for alert in alerts:
        alert.factors = scrub_factors(alert.factors)
    signals = (await session.execute(select(Signal).where(Signal.customer_id == data.customer_id))).scalars().all()
    for signal in signals:
        signal.data = _scrubbed_event_data(signal.data)
    if alert_ids:
        changes = (
            (await session.execute(select(AlertChange).where(col(AlertChange.alert_id).in_(alert_ids)))).scalars().all()
        )
        for change in changes:
            change.data = _scrubbed_event_data(change.data)
    deliveries = await _erase_deliveries(session, data.customer_id)
    await touches.erase(session=session, customer_id=data.customer_id)
    await session.flush()
    summary = (
        f"Removed free-text notes from {len(alerts)} alert(s) and {len(tasks)} task(s), the customer's tier "
        f"attribute, factor labels from alerts, signals and the alert change log, and the payloads of "
        f"{deliveries} webhook delivery(ies), and the consent replica; kept alerts, tasks, touches and outcomes "
        "by pseudonymous id as anonymous aggregates."
    )
    await enqueue(
        session,
        ErasureConfirmed(customer_id=data.customer_id, service="retention", erased_at=utc_now(), summary=summary),
    )
    return True


def scrub_factors(factors: Any) -> list[dict[str, Any]]:
    """Factors without their labels (a label may quote a feature value): the code stands in for it."""
    if not isinstance(factors, list):
        return []
    return [
        {"code": f.get("code"), "label": f.get("code"), "contribution": f.get("contribution")}
        for f in factors
        if isinstance(f, dict)
    ]


def _scrubbed_event_data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    return {**data, "factors": scrub_factors(data["factors"])} if "factors" in data else dict(data)


async def _erase_deliveries(session: AsyncSession, customer_id: str) -> int:
    """Blank the payload of every webhook delivery about the customer; returns how many.

    Deliveries have no customer column: the payload (a CloudEvent) names the customer in data.customer_id.
    The LIKE narrows the rows; the parsed id decides. A pending delivery is dropped (failed, payload
    gone) rather than sent with data of an erased customer.
    """
    rows = (
        (await session.execute(select(WebhookDelivery).where(col(WebhookDelivery.payload).contains(customer_id))))
        .scalars()
        .all()
    )
    erased = 0
    for delivery in rows:
        try:
            about = orjson.loads(delivery.payload).get("data", {}).get("customer_id")
        except (orjson.JSONDecodeError, AttributeError):
            about = None
        if about != customer_id:
            continue
        delivery.payload = ERASED_PAYLOAD
        if delivery.status == DeliveryStatus.pending:
            delivery.status = DeliveryStatus.failed
            delivery.last_error = "customer erased"
        erased += 1
    return erased


ERASED_PAYLOAD = "{}"


# ---- metrics -------------------------------------------------------------------------------------


async def metrics(
    *, session: AsyncSession, start: datetime, end: datetime, group_by: str | None, lookback: timedelta
) -> tuple[outcomes.Metrics, list[outcomes.Metrics]]:
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise Problem(
            422,
            "Invalid period",
            "to must be after from",
            code="validation",
            errors=[field_error("to", "must be after from")],
        )
    overall = outcomes.Tally(start, end, lookback)
    # Each rule's metrics count every customer, so its key must be known before the first page.
    pairs = await session.execute(select(Alert.rule_id, Alert.reason).distinct()) if group_by == "rule" else []
    rules = {rule_id or reason for rule_id, reason in pairs}
    groups = outcomes.GroupedTally(group_by, start, end, lookback, rules) if group_by else None
    after = ""
    # Bounded memory: the facts of METRICS_PAGE customers at a time, in customer id order (keyset paging).
    while page := await _metrics_page(session, after):
        async for fact, alerts in _facts_of(session, page):
            overall.add(fact, alerts)
            if groups is not None:
                groups.add(fact, alerts)
        after = page[-1]
    return overall.result(), groups.result() if groups is not None else []


METRICS_PAGE = 500


async def _metrics_page(session: AsyncSession, after: str) -> list[str]:
    """The next METRICS_PAGE customer ids (after ``after``) known to any table the metrics read.

    Each table gives at most a page through its customer_id index; the union of those is cut to a page.
    """
    branches = [
        select(column.label("customer_id"))
        .where(column > after)
        .group_by(column)
        .order_by(column)
        .limit(METRICS_PAGE)
        .subquery()
        for column in (Customer.customer_id, CustomerScore.customer_id, StatusChange.customer_id, Alert.customer_id)
    ]
    ids = union(*(select(b.c.customer_id) for b in branches)).subquery()
    query = select(ids.c.customer_id).order_by(ids.c.customer_id).limit(METRICS_PAGE)
    return list((await session.execute(query)).scalars())


async def _facts_of(
    session: AsyncSession, ids: list[str]
) -> AsyncIterator[tuple[outcomes.CustomerFact, list[outcomes.AlertFact]]]:
    replicas = {
        c.customer_id: c
        for c in (await session.execute(select(Customer).where(Customer.customer_id.in_(ids)))).scalars()
    }
    scores = dict(
        (
            await session.execute(
                select(CustomerScore.customer_id, CustomerScore.value_tier).where(CustomerScore.customer_id.in_(ids))
            )
        ).all()
    )
    changes: dict[str, list[tuple[datetime, str]]] = {}
    for customer_id, at, status in await session.execute(
        select(StatusChange.customer_id, StatusChange.at, StatusChange.status).where(StatusChange.customer_id.in_(ids))
    ):
        changes.setdefault(customer_id, []).append((as_utc(at), status))
    alerts: dict[str, list[outcomes.AlertFact]] = {}
    for r in await session.execute(
        select(
            Alert.customer_id, Alert.reason, Alert.first_triggered_at, Alert.rule_id, Alert.outcome, Alert.control
        ).where(Alert.customer_id.in_(ids))
    ):
        alerts.setdefault(r.customer_id, []).append(
            outcomes.AlertFact(
                customer_id=r.customer_id,
                reason=r.reason,
                first_triggered_at=as_utc(r.first_triggered_at),
                rule_id=r.rule_id,
                outcome=r.outcome,
                control=bool(r.control),
            )
        )
    for i in ids:
        replica = replicas.get(i)
        fact = outcomes.CustomerFact(
            customer_id=i,
            tier=(replica.tier if replica else None) or scores.get(i),
            segment=replica.segment if replica else None,
            first_seen=as_utc(replica.first_seen) if replica else None,
            status_changes=tuple(changes.get(i, ())),
        )
        yield fact, alerts.get(i, [])


# ---- webhooks ------------------------------------------------------------------------------------


async def create_webhook(
    *,
    session: AsyncSession,
    data: WebhookCreate,
    allow: Sequence[targets.IPNetwork] = (),
    resolve: targets.Resolver = targets.system_resolver,
) -> Webhook:
    try:
        # Checked again at every delivery (DNS can change); this catches the obvious case early.
        await targets.pin(str(data.url), allow, resolve)
    except targets.TargetRefused as exc:
        raise Problem(
            422,
            "Invalid webhook",
            f"Webhook target refused: {exc}.",
            code="validation",
            errors=[field_error("url", f"{exc}: webhooks go to public addresses only")],
        ) from None
    known = {m.event_type for m in REGISTRY if m.topic == "crm.retention.v1"}
    unknown = sorted(set(data.event_types) - known)
    if unknown:
        raise Problem(
            422,
            "Invalid webhook",
            f"Unknown event types {unknown}",
            code="validation",
            errors=[field_error("event_types", f"choose from {sorted(known)}")],
        )
    hook = Webhook(url=str(data.url), event_types=sorted(set(data.event_types)), secret=data.secret)
    session.add(hook)
    await session.flush()
    catalog_changed(session)
    return hook


async def get_webhook(*, session: AsyncSession, webhook_id: str, active_only: bool = True) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None or (active_only and not hook.active):
        raise _not_found("Webhook", webhook_id)
    return hook


async def list_webhooks(*, session: AsyncSession, limit: int, offset: int) -> tuple[Sequence[Webhook], int]:
    conditions = [Webhook.active.is_(True)]
    query = select(Webhook).where(*conditions).order_by(Webhook.created_at, Webhook.id)
    return await _page(session, query, conditions, Webhook, limit, offset)


async def delete_webhook(*, session: AsyncSession, webhook_id: str) -> None:
    """Unsubscribe: nothing more is queued or sent; its delivery log stays readable."""
    hook = await get_webhook(session=session, webhook_id=webhook_id)
    hook.active = False
    await session.execute(
        WebhookDelivery.__table__.update()
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="webhook deleted")
    )
    await session.flush()
    catalog_changed(session)


async def list_deliveries(
    *, session: AsyncSession, webhook_id: str, limit: int, offset: int
) -> tuple[Sequence[WebhookDelivery], int]:
    await get_webhook(session=session, webhook_id=webhook_id, active_only=False)
    conditions = [WebhookDelivery.webhook_id == webhook_id]
    query = select(WebhookDelivery).where(*conditions).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    return await _page(session, query, conditions, WebhookDelivery, limit, offset)


# ---- housekeeping --------------------------------------------------------------------------------


async def prune(
    *,
    session: AsyncSession,
    signals_for: timedelta,
    changes_for: timedelta,
    deliveries_for: timedelta | None = None,
    now: datetime | None = None,
) -> None:
    """Drop signals, alert changes and finished webhook deliveries past their retention (they only serve
    preview, risk_jump, replay and a subscriber's debugging)."""
    now = now or utc_now()
    await session.execute(delete(Signal).where(Signal.at < now - signals_for))
    await session.execute(delete(AlertChange).where(AlertChange.at < now - changes_for))
    if deliveries_for is not None:
        # The delivery log holds copies of events (payloads): kept only as long as it helps to debug
        # a subscriber. A pending delivery stays until it is sent or fails.
        await session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.status != DeliveryStatus.pending,  # type: ignore[arg-type]
                WebhookDelivery.created_at < now - deliveries_for,  # type: ignore[arg-type]
            )
        )
