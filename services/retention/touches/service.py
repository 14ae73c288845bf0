"""Touches: every playbook step that would contact the customer is checked against the customer's consent
and the contact policy before its task is created, and recorded as allowed or blocked with the reason.

A blocked step creates no task and is never dropped silently: its touch row says why (opted_out,
no_opt_in, quiet_hours, frequency_cap, unknown_channel). Internal steps (no channel in
contact_policy.STEP_CHANNELS) are never blocked and record no touch. Consent comes from the replica of
consent.changed (ConsentReplica). Domain functions only: they never commit. docs/consent.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.customer import ConsentChanged
from servicekit import runtime_settings
from servicekit.clock import utc_now
from servicekit.db import hold_until_commit, holds, insert_rows, take_held
from servicekit.events.envelope import EventData
from servicekit.types import as_utc
from services.retention.db import new_id
from services.retention.replica.models import Customer
from services.retention.settings import RetentionSettings, get_settings
from services.retention.surveys import service as surveys
from services.retention.touches import contact_policy as cp
from services.retention.touches.models import ConsentReplica, Touch


@dataclass
class Consents:
    """A consumer batch's consent replicas by customer id (None: none), read once in the batch preload."""

    replicas: dict[str, ConsentReplica | None] = field(default_factory=dict)


async def _consent(session: AsyncSession, customer_id: str, consents: Consents | None) -> ConsentReplica | None:
    if consents is not None and customer_id in consents.replicas:
        return consents.replicas[customer_id]
    return await session.get(ConsentReplica, customer_id)


# Touch rows recorded in this transaction, inserted just before commit in one statement (flushed one by one,
# each screened alert cost an INSERT). Code that reads touches with SQL of its own calls store_new_touches first.
_NEW_TOUCHES = "retention.new_touches"


async def store_new_touches(session: AsyncSession) -> None:
    """Write this transaction's held touch rows now."""
    rows = take_held(session.sync_session, _NEW_TOUCHES) if holds(session, _NEW_TOUCHES) else []
    if rows:
        await session.execute(insert(Touch), rows)


def policy_of(settings: RetentionSettings) -> cp.Policy:
    def cap(value: Any) -> cp.Cap | None:
        return cp.Cap(value.max_touches, timedelta(days=value.window_days)) if value is not None else None

    quiet = None
    if settings.contact_quiet_start and settings.contact_quiet_end:
        quiet = cp.Quiet(cp.parse_hhmm(settings.contact_quiet_start), cp.parse_hhmm(settings.contact_quiet_end))
    return cp.Policy(
        tier_caps={tier: c for tier, value in settings.contact_tier_caps.items() if (c := cap(value)) is not None},
        default_cap=cap(settings.contact_default_cap),
        quiet=quiet,
        quiet_channels=frozenset(settings.contact_quiet_channels),
        opt_in_channels=frozenset(settings.contact_opt_in_channels),
        default_timezone=settings.contact_default_timezone,
    )


async def policy(session: AsyncSession) -> cp.Policy:
    """The contact policy in force: the configured one with the administrators' run-time overrides."""
    return policy_of(await runtime_settings.current(session, get_settings()))


def contact_of(replica: ConsentReplica | None) -> cp.CustomerContact:
    if replica is None:
        return cp.CustomerContact()
    cap = None
    if replica.cap_max_touches is not None and replica.cap_window_days is not None:
        cap = cp.Cap(replica.cap_max_touches, timedelta(days=replica.cap_window_days))
    quiet = None
    if replica.quiet_start and replica.quiet_end:
        quiet = cp.Quiet(cp.parse_hhmm(replica.quiet_start), cp.parse_hhmm(replica.quiet_end))
    return cp.CustomerContact(channels=dict(replica.channels), timezone=replica.timezone, cap=cap, quiet=quiet)


async def screen(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    *,
    tier: str | None,
    verdicts: dict[str, str] | None = None,
    consents: Consents | None = None,
) -> tuple[list[dict[str, Any]], list[EventData]]:
    """The task rows that may be created (internal ones, and touches the policy allows) and the events
    their touches send (a survey link per allowed survey touch). Records a touch for every row that
    contacts the customer (allowed with its task id, or blocked with the reason). A row's `channel`, if
    given, overrides its action's, and a survey row's `survey` (nps, csat) the configured question;
    `verdicts`, if given, receives each touching row's verdict by row id. `consents`: the batch's
    preloaded consent replicas, if any. Touch rows are inserted at commit."""
    touching = [
        (row, channel) for row in rows if (channel := row.get("channel") or cp.channel_of(row["action"])) is not None
    ]
    if not touching:
        return rows, []
    customer_id = rows[0]["customer_id"]
    contact = contact_of(await _consent(session, customer_id, consents))
    rules = await policy(session)
    cap = cp.cap_for(contact, rules, tier)
    previous: list[datetime] = []
    if cap is not None:
        times = [as_utc(row["due_at"]) for row, _ in touching]
        query = select(Touch.at).where(
            col(Touch.customer_id) == customer_id,
            col(Touch.allowed).is_(True),
            col(Touch.at) > min(times) - cap.window,
            col(Touch.at) < max(times) + cap.window,
        )
        await store_new_touches(session)  # this transaction's earlier touches (a consumer batch) count too
        previous = [as_utc(t) for t in (await session.execute(query)).scalars()]
    now = utc_now()
    blocked: set[str] = set()
    events: list[EventData] = []
    for row, channel in touching:
        at = as_utc(row["due_at"])
        verdict = cp.evaluate(channel=channel, at=at, contact=contact, policy=rules, tier=tier, previous=previous)
        allowed = verdict is cp.Verdict.allowed
        if verdicts is not None:
            verdicts[row["id"]] = verdict.value
        if allowed:
            previous.append(at)
            if str(row["action"]) in surveys.SURVEY_ACTIONS:
                events.append(
                    surveys.new_link(
                        session,
                        customer_id=customer_id,
                        alert_id=row["alert_id"],
                        task_id=row["id"],
                        channel=channel,
                        now=now,
                        survey=row.get("survey"),
                    )
                )
        else:
            blocked.add(row["id"])
        touch = {
            "id": new_id(),
            "customer_id": customer_id,
            "alert_id": row["alert_id"],
            "task_id": row["id"] if allowed else None,
            "reason": row["reason"],
            "action": str(row["action"]),
            "channel": channel,
            "allowed": allowed,
            "verdict": verdict.value,
            "at": at,
            "created_at": now,
        }
        hold_until_commit(session, _NEW_TOUCHES, [touch], insert_rows(Touch.__table__))  # type: ignore[attr-defined]
    return [row for row in rows if row["id"] not in blocked], events


# ---- replica of consent.changed -------------------------------------------------------------------------


async def on_consent_changed(*, session: AsyncSession, data: ConsentChanged) -> None:
    """Keep the latest version; an older or repeated one changes nothing, nor anything after erasure."""
    customer = await session.get(Customer, data.customer_id)
    if customer is not None and customer.erased_at is not None:
        return
    replica = await session.get(ConsentReplica, data.customer_id, with_for_update=True)
    if replica is None:
        replica = ConsentReplica(customer_id=data.customer_id, version=0)
        session.add(replica)
    if data.version <= replica.version:
        return
    replica.version = data.version
    replica.channels = {str(channel): str(c.status) for channel, c in data.channels.items()}
    replica.timezone = data.timezone
    replica.cap_max_touches = data.frequency_cap.max_touches if data.frequency_cap else None
    replica.cap_window_days = data.frequency_cap.window_days if data.frequency_cap else None
    replica.quiet_start = data.quiet_hours.start if data.quiet_hours else None
    replica.quiet_end = data.quiet_hours.end if data.quiet_hours else None
    replica.updated_at = utc_now()
    await session.flush()


async def erase(*, session: AsyncSession, customer_id: str) -> None:
    """Erasure: the consent replica and unanswered survey links go (touches stay, ids and codes only, like tasks)."""
    await session.execute(delete(ConsentReplica).where(col(ConsentReplica.customer_id) == customer_id))
    await surveys.erase(session=session, customer_id=customer_id)


# ---- reads ----------------------------------------------------------------------------------------------------


async def list_touches(
    *,
    session: AsyncSession,
    customer_id: str,
    allowed: bool | None,
    channel: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Touch], int]:
    await store_new_touches(session)
    where = [col(Touch.customer_id) == customer_id]
    if allowed is not None:
        where.append(col(Touch.allowed).is_(allowed))
    if channel is not None:
        where.append(col(Touch.channel) == channel)
    total = (await session.execute(select(func.count()).select_from(Touch).where(*where))).scalar_one()
    query = (
        select(Touch)
        .where(*where)
        .order_by(col(Touch.created_at).desc(), col(Touch.id).desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars()), total


async def blocked_counts(
    *, session: AsyncSession, start: datetime, end: datetime, customers: Any = None
) -> tuple[list[Any], int, int]:
    """Blocked touches recorded in [start, end) by (verdict, channel), and the allowed and blocked totals;
    only the touches of ``customers`` (a select of customer ids) when given."""
    await store_new_touches(session)
    window = [col(Touch.created_at) >= start, col(Touch.created_at) < end]
    if customers is not None:
        window.append(col(Touch.customer_id).in_(customers))
    query = (
        select(Touch.verdict, Touch.channel, func.count().label("n"))
        .where(*window, col(Touch.allowed).is_(False))
        .group_by(Touch.verdict, Touch.channel)
        .order_by(func.count().desc(), Touch.verdict, Touch.channel)
    )
    rows = list((await session.execute(query)).all())
    totals = select(
        func.coalesce(func.sum(case((col(Touch.allowed).is_(True), 1), else_=0)), 0),
        func.coalesce(func.sum(case((col(Touch.allowed).is_(False), 1), else_=0)), 0),
    ).where(*window)
    allowed, blocked = (await session.execute(totals)).one()
    return rows, int(allowed), int(blocked)
