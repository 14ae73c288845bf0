"""The sequence engine: enrolments and their persisted timers, claimed and run by a background loop.

Every enrolment's next step is its row's `due_at`. A round claims due rows in small batches: on PostgreSQL
`SELECT ... FOR UPDATE SKIP LOCKED` (two replicas take different rows), and on every database a
conditional `UPDATE ... WHERE version = :seen` that only one transaction can win. The claimed steps run in
that same transaction with their tasks, touches, outbox events, webhook deliveries and the next timer, so a
step runs exactly once and a restart resumes from the rows (nothing is held in memory). docs/sequences.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.retention import TaskCreated, TouchRequested
from servicekit.background import every
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.events.envelope import EventData
from servicekit.problems import not_found
from servicekit.sql import dialect_insert
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.service import ActivePlaybook
from services.retention.db import new_id
from services.retention.publishing import publish
from services.retention.sequences import core as sq
from services.retention.sequences import offers
from services.retention.sequences.facts import read_facts
from services.retention.sequences.models import Enrolment, EnrolmentStatus
from services.retention.settings import RetentionSettings
from services.retention.surveys import service as surveys
from services.retention.tasks.events import task_event
from services.retention.tasks.models import Task, TaskStatus
from services.retention.touches import contact_policy as cp
from services.retention.touches import service as touches
from services.retention.waits import service as waits

log = logging.getLogger("retention.sequences")

TRAIL_KEPT = 30


def enrols(playbook: ActivePlaybook, tier: str | None) -> bool:
    return sq.pick(playbook.sequences, tier) is not None


async def enrol(
    session: AsyncSession,
    *,
    playbook: ActivePlaybook,
    customer_id: str,
    alert_id: str | None,
    tier: str | None,
    owner: str | None,
    now: datetime | None = None,
) -> bool:
    """Enrol the customer in the playbook's sequence for the tier, first step due now. One active
    enrolment per customer and reason: a redelivered or repeated trigger enrols no one again."""
    definition = sq.pick(playbook.sequences, tier)
    if definition is None:
        return False
    now = now or utc_now()
    table = Enrolment.__table__  # type: ignore[attr-defined]
    row = {
        "id": new_id(),
        "customer_id": customer_id,
        "alert_id": alert_id,
        "reason": playbook.reason,
        "tier": tier,
        "owner": owner,
        "definition": definition.model_dump(mode="json", by_alias=True),
        "status": EnrolmentStatus.active.value,
        "cursor": 0,
        "due_at": now,
        "version": 0,
        "steps_run": 0,
        "trail": [],
        "active_slot": f"{customer_id}:{playbook.reason}",
        "started_at": now,
        "updated_at": now,
    }
    query = dialect_insert(session)(table).values(row).on_conflict_do_nothing(index_elements=[table.c.active_slot])
    result = await session.execute(query.returning(table.c.id))
    return result.scalar_one_or_none() is not None


# ---- the engine ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RoundStats:
    batches: int = 0
    claimed: int = 0  # enrolments whose due step this round ran


async def claim(session: AsyncSession, *, now: datetime, limit: int) -> list[Enrolment]:
    """Due active enrolments this transaction now owns.

    On PostgreSQL the read skips rows another engine holds. Everywhere, one conditional UPDATE takes the
    rows that are still active and due (bumping their version): an engine that read a row before another
    ran its step finds it no longer due (its timer moved on, or it finished) and leaves it.
    """
    due = (col(Enrolment.status) == EnrolmentStatus.active.value, col(Enrolment.due_at) <= now)
    query = select(Enrolment.id).where(*due).order_by(col(Enrolment.due_at)).limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list((await session.execute(query)).scalars())
    if not ids:
        return []
    taken = await session.execute(
        update(Enrolment)
        .where(col(Enrolment.id).in_(ids), *due)
        .values(version=Enrolment.version + 1)
        .returning(Enrolment.id)
        .execution_options(synchronize_session=False)
    )
    won = list(taken.scalars())
    if not won:
        return []
    rows = select(Enrolment).where(col(Enrolment.id).in_(won)).execution_options(populate_existing=True)
    return sorted((await session.execute(rows)).scalars(), key=lambda e: (as_utc(e.due_at), e.id))  # type: ignore[arg-type]


async def run_batch(session: AsyncSession, *, now: datetime, limit: int, stats: RoundStats | None = None) -> int:
    """Claim up to `limit` due enrolments and run their steps, in the caller's transaction; how many ran."""
    stats = stats if stats is not None else RoundStats()
    claimed = await claim(session, now=now, limit=limit)
    if not claimed:
        return 0
    facts = await read_facts(session, claimed)
    events: list[EventData] = []
    for enrolment in claimed:
        events.extend(await run_step(session, enrolment, facts[enrolment.id], now=now))
    if events:
        await publish(UnitOfWork(session), *events)  # the outbox and webhook deliveries, in this transaction
    await session.flush()
    session.expunge_all()  # a round of many batches keeps no rows in memory
    stats.batches += 1
    stats.claimed += len(claimed)
    return len(claimed)


async def run_due(
    database: Database, *, batch_size: int, now: datetime | None = None, max_batches: int | None = None
) -> RoundStats:
    """Run every due step, a batch per transaction, until none is due (or max_batches)."""
    stats = RoundStats()
    while max_batches is None or stats.batches < max_batches:
        at = now or utc_now()
        async with database.transaction() as session:
            ran = await run_batch(session, now=at, limit=batch_size, stats=stats)
        if ran == 0:
            break
    return stats


async def run_sequences(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings

    async def one_round() -> None:
        stats = await run_due(database, batch_size=settings.sequence_batch_size)
        if stats.claimed:
            log.info("sequence steps ran", extra={"enrolments": stats.claimed, "batches": stats.batches})

    await every(settings.sequence_interval_s, "retention.sequences", one_round)


# ---- one step --------------------------------------------------------------------------------------------


async def run_step(session: AsyncSession, enrolment: Enrolment, facts: sq.Facts, *, now: datetime) -> list[EventData]:
    """Advance one claimed enrolment: its tasks and touches, its new state and timer; the events to publish."""
    definition = sq.SequenceDef.model_validate(enrolment.definition)
    state = sq.State(
        cursor=enrolment.cursor,
        started_at=as_utc(enrolment.started_at),
        waiting_since=as_utc(enrolment.waiting_since) if enrolment.waiting_since else None,
        wait_began=as_utc(enrolment.wait_began) if enrolment.wait_began else None,
    )
    nxt = sq.advance(definition, state, facts, now)
    early = dict(nxt.ended_early)
    trail = [
        {
            "step": step_id,
            "at": now.isoformat(),
            **({"result": f"ended_by:{early[step_id]}"} if step_id in early else {}),
        }
        for step_id in nxt.trail
    ]
    await _wakes(session, enrolment, definition, nxt)
    finished = nxt.finished
    events: list[EventData] = []
    for effect in nxt.effects:
        result, more = await _carry_out(session, enrolment, effect.step, now=now)
        events.extend(more)
        trail.append({"step": effect.step.id, "at": now.isoformat(), "result": result})
        if result == "blocked" and isinstance(effect.step, sq.TouchStep) and effect.step.on_blocked == "stop":
            finished = f"stopped:blocked:{effect.step.id}"
            break
    enrolment.cursor = nxt.state.cursor
    enrolment.waiting_since = nxt.state.waiting_since
    enrolment.wait_began = nxt.state.wait_began
    enrolment.steps_run += len(nxt.effects)
    enrolment.trail = [*enrolment.trail, *trail][-TRAIL_KEPT:]
    enrolment.updated_at = now
    if finished is None:
        enrolment.due_at = nxt.due_at
    else:
        _finish(enrolment, finished, now)
    return events


async def _wakes(session: AsyncSession, enrolment: Enrolment, definition: sq.SequenceDef, nxt: sq.Next) -> None:
    """Keep the wake registry in step: registered while parked at a wait with `until`, removed after."""
    parked_before = enrolment.waiting_since is not None and _waits_for_events(definition, enrolment.cursor)
    parked_now = nxt.finished is None and bool(nxt.wake_on)
    if parked_now and not (parked_before and nxt.state.cursor == enrolment.cursor):
        await waits.register(session, enrolment_id=enrolment.id, customer_id=enrolment.customer_id, events=nxt.wake_on)
    elif parked_before and not (parked_now and nxt.state.cursor == enrolment.cursor):
        await waits.clear(session, [enrolment.id])


def _waits_for_events(definition: sq.SequenceDef, cursor: int) -> bool:
    step = definition.steps[cursor] if cursor < len(definition.steps) else None
    return isinstance(step, sq.WaitStep) and bool(step.until)


def _finish(enrolment: Enrolment, why: str, now: datetime) -> None:
    enrolment.status = EnrolmentStatus.completed if why == "completed" else EnrolmentStatus.stopped
    enrolment.stop_reason = None if why == "completed" else why.removeprefix("stopped:")
    enrolment.due_at = None
    enrolment.active_slot = None
    enrolment.finished_at = now


async def _carry_out(
    session: AsyncSession, enrolment: Enrolment, step: sq.TaskStep | sq.TouchStep, *, now: datetime
) -> tuple[str, list[EventData]]:
    """A task or a touch, through the consent gate when it contacts the customer; ('created' | 'sent' |
    'blocked', the events to publish). A campaign's touch step sends the campaign's offer (offers.py)."""
    if isinstance(step, sq.TouchStep) and enrolment.context and step.action.value not in surveys.SURVEY_ACTIONS:
        return await offers.carry_out(session, enrolment, step, now=now)
    is_task = isinstance(step, sq.TaskStep)
    due = now + timedelta(hours=step.due_in_hours) if isinstance(step, sq.TaskStep) else now
    row: dict[str, Any] = {
        "id": new_id(),
        "alert_id": enrolment.alert_id,
        "customer_id": enrolment.customer_id,
        "reason": enrolment.reason,
        "action": step.action,
        "due_at": due,
        "survey": step.survey if isinstance(step, sq.TouchStep) else None,
    }
    allowed, events = await touches.screen(session, [row], tier=enrolment.tier)
    if not allowed:
        return "blocked", []
    if isinstance(step, sq.TaskStep):
        owner = enrolment.owner if step.assignee == "owner" else step.assignee
        task = Task(
            id=row["id"],
            alert_id=enrolment.alert_id,
            customer_id=enrolment.customer_id,
            reason=enrolment.reason,
            action=step.action,
            owner=owner,
            status=TaskStatus.open,
            due_at=due,
            created_at=now,
        )
        session.add(task)
        enrolment.last_task_id = task.id
        return "created", [task_event(TaskCreated, task), *events]
    assert not is_task
    if step.action.value in surveys.SURVEY_ACTIONS:
        return "sent", list(events)  # the survey link event is the touch
    channel = cp.channel_of(step.action) or ""
    touch = TouchRequested(
        touch_id=row["id"],
        enrolment_id=enrolment.id,
        customer_id=enrolment.customer_id,
        alert_id=enrolment.alert_id,
        reason=enrolment.reason,
        step_id=step.id,
        action=step.action.value,
        channel=channel,
        template=step.template,
        at=now,
    )
    return "sent", [touch, *events]


# ---- reads and the stop route ----------------------------------------------------------------------------


async def list_enrolments(
    *, session: AsyncSession, customer_id: str, limit: int, offset: int
) -> tuple[list[Enrolment], int]:
    where = col(Enrolment.customer_id) == customer_id
    total = (await session.execute(select(func.count()).select_from(Enrolment).where(where))).scalar_one()
    query = (
        select(Enrolment)
        .where(where)
        .order_by(col(Enrolment.started_at).desc(), col(Enrolment.id))
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars()), total


async def get_enrolment(*, session: AsyncSession, enrolment_id: str, for_update: bool = False) -> Enrolment:
    query = select(Enrolment).where(col(Enrolment.id) == enrolment_id)
    if for_update:
        query = query.with_for_update()
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        raise not_found("Enrolment", enrolment_id, detail=f"No enrolment {enrolment_id}.")
    return found


async def stop(*, session: AsyncSession, enrolment_id: str, reason: str) -> Enrolment:
    """Stop an active enrolment (its timer goes); stopping a finished one changes nothing (a retry)."""
    enrolment = await get_enrolment(session=session, enrolment_id=enrolment_id, for_update=True)
    if enrolment.status == EnrolmentStatus.active:
        now = utc_now()
        enrolment.version += 1  # an engine that read the row before this commit loses its claim
        enrolment.trail = [*enrolment.trail, {"step": "stop", "at": now.isoformat(), "result": reason}][-TRAIL_KEPT:]
        _finish(enrolment, f"stopped:manual:{reason}", now)
        await session.flush()
    return enrolment
