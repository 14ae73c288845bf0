"""Alert rules: stored, validated per kind, previewed against the stored history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.registry import REGISTRY
from contracts.scoring import ScoreUpdated
from servicekit.clock import utc_now
from servicekit.problems import Problem, field_error, not_found
from servicekit.types import as_utc
from services.retention.catalog.service import params_of
from services.retention.db import page
from services.retention.replica.models import Customer, CustomerScore
from services.retention.rules import core as rules
from services.retention.rules import preview
from services.retention.rules.core import Rule, RuleKind
from services.retention.rules.models import AlertRule, RuleCreate, RuleParamsBody, RuleUpdate
from services.retention.signals.models import Signal


def check_rule(kind: RuleKind, params: RuleParamsBody) -> dict[str, Any]:
    """The parameters as stored, or a 422 naming every invalid field for this kind."""
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
    params = check_rule(data.kind, data.params)
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
        raise not_found("Rule", rule_id)
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
    return await page(session, query, conditions, AlertRule, limit, offset)


async def update_rule(*, session: AsyncSession, rule_id: str, data: RuleUpdate) -> AlertRule:
    rule = await get_rule(session=session, rule_id=rule_id)
    if data.params is not None:
        rule.params = check_rule(RuleKind(rule.kind), data.params)
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


async def preview_rule(*, session: AsyncSession, rule: Rule, start: datetime, end: datetime) -> preview.PreviewResult:
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
    signals = [preview.Signal(r.customer_id, r.at, REGISTRY.model(r.event_type).model_validate(r.data)) for r in rows]
    # The account-managed tier overrides; a score carries its own tier otherwise (tier_of).
    overrides = await session.execute(select(Customer.customer_id, Customer.tier).where(Customer.tier.is_not(None)))
    tiers: dict[str, str | None] = dict(overrides.all())
    if rules.WATCHES[rule.kind] != ScoreUpdated.event_type:
        latest = await session.execute(select(CustomerScore.customer_id, CustomerScore.value_tier))
        for customer_id, tier in latest:
            tiers.setdefault(customer_id, tier)
    return preview.preview(rule, signals, start=start, end=end, tiers=tiers)
