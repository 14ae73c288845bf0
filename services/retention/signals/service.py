"""Signals: the consumed events the rules watch, stored once, and the score history the rules read.

A consumer batch stores its signals in one statement per chunk before any event is applied (preload);
`BatchSignals`, this transaction's typed state, remembers which of them are new and not applied yet, and
holds one read of the score history for every score of the batch that needs some.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.sql import KEYS, chunks, column_arrays, for_each_key, insert_from_arrays, on_postgres
from servicekit.types import as_utc
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.service import catalog
from services.retention.rules.core import Rule, RuleKind, ScorePoint, needs_history
from services.retention.signals import window
from services.retention.signals.models import Signal

WATCHED = (ScoreUpdated, ComplaintOpened, ComplaintOverdue, SurveyAnswered)


@dataclass(frozen=True, slots=True)
class _ScoreSignal:
    event_id: str
    at: datetime
    churn_risk: float
    lifecycle_stage: str | None


@dataclass(frozen=True, slots=True)
class _BatchHistory:
    since: datetime
    until: datetime
    signals: dict[str, list[_ScoreSignal]]


@dataclass
class BatchSignals:
    """The batch's signals in this transaction."""

    # Event id -> whether preload stored its signal now (False: stored before); removed once the event is applied.
    unapplied: dict[str, bool] = field(default_factory=dict)
    history: _BatchHistory | None = None  # score signals read once for the batch


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


async def preload(uow: UnitOfWork, events: Sequence[Received[Any]]) -> None:
    """Store the batch's watched signals, and read once the score history its new scores need."""
    watched = [e for e in events if isinstance(e.data, WATCHED)]
    if not watched:
        return
    stored = await _store_signals(uow, watched)
    state = uow.state(BatchSignals)
    state.unapplied.update({e.id: e.id in stored for e in watched})
    active = (await catalog(uow)).rules
    needing = [
        e.data for e in watched if e.id in stored and isinstance(e.data, ScoreUpdated) and needs_history(e.data, active)
    ]
    if not needing:
        return
    times = [as_utc(d.computed_at) for d in needing]
    longest = history_window(active)
    since, until = min(times) - longest, max(times)
    ids = sorted({d.customer_id for d in needing})
    # The scores inside every needing score's every window folded to the two the rules use (signals.window)
    folded = (until - window.shortest_window(list(active), longest), min(times), sorted(state.unapplied))
    state.history = _BatchHistory(since, until, await _read_score_signals(uow, ids, since, until, folded))


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


async def _store_signals(uow: UnitOfWork, events: Sequence[Received[Any]]) -> set[str]:
    """Store the events' signals (a statement per chunk), skipping event ids stored already; the ids stored now."""
    stored: set[str] = set()
    postgres = on_postgres(uow.session)
    query = _store_statement(postgres)
    for chunk in chunks(events):
        rows = [_signal_row(e) for e in chunk]
        bound = column_arrays(_SIGNALS, _SIGNAL_COLUMNS, rows) if postgres else rows
        stored.update((await uow.session.execute(query, bound)).scalars())
    return stored


_SIGNALS = Signal.__table__  # type: ignore[attr-defined]
_SIGNAL_COLUMNS = ("event_id", "event_type", "customer_id", "at", "data", "churn_risk", "lifecycle_stage")


@cache
def _store_statement(postgres: bool) -> Any:
    """Built once. On PostgreSQL the rows travel as arrays, one SQL text for any batch size (a multi-row
    VALUES list had one per size: a prepared statement each, per connection and backend)."""
    insert = insert_from_arrays(_SIGNALS, _SIGNAL_COLUMNS) if postgres else sqlite.insert(_SIGNALS)
    return insert.on_conflict_do_nothing(index_elements=[_SIGNALS.c.event_id]).returning(_SIGNALS.c.event_id)


async def record_signal(uow: UnitOfWork, event: Received[Any]) -> bool:
    """Store the signal; False if this event id is stored already (stored by preload with its batch, if it was)."""
    unapplied = uow.state(BatchSignals).unapplied
    if event.id in unapplied:
        return unapplied.pop(event.id)
    return bool(await _store_signals(uow, [event]))


def history_window(active: Sequence[Rule]) -> timedelta:
    return timedelta(days=max([r.params.within_days or 0 for r in active if r.kind == RuleKind.risk_jump] + [1]))


async def score_history(uow: UnitOfWork, customer_id: str, since: datetime, at: datetime) -> tuple[ScorePoint, ...]:
    """The customer's score signals in [since, at), from preload's read for the batch if it covers them.

    Later events of this batch are stored already (by preload) but must not count as history yet.
    """
    state = uow.state(BatchSignals)
    cached = state.history
    if cached is not None and customer_id in cached.signals and cached.since <= since and at <= cached.until:
        signals = cached.signals[customer_id]
    else:
        signals = (await _read_score_signals(uow, [customer_id], since, at))[customer_id]
    return tuple(
        ScorePoint(r.at, r.churn_risk, r.lifecycle_stage)
        for r in signals
        if since <= r.at < at and not state.unapplied.get(r.event_id)
    )


async def _read_score_signals(
    uow: UnitOfWork,
    customer_ids: Sequence[str],
    since: datetime,
    until: datetime,
    folded: tuple[datetime, datetime, list[str]] | None = None,
) -> dict[str, list[_ScoreSignal]]:
    """The customers' stored score signals in [since, until), by customer (every customer id a key);
    folded (edge, first, own): those in [edge, first) not in own reduced as signals.window says."""
    found: dict[str, list[_ScoreSignal]] = {i: [] for i in customer_ids}
    session = uow.session
    postgres = on_postgres(session)
    query = _score_signals_in_window(postgres) if folded is None else window.reduced_statement(postgres)
    params: dict[str, Any] = {KEYS: list(customer_ids), "since": since, "until": until}
    if folded is not None:
        params |= {"edge": folded[0], "first": folded[1], "own": folded[2]}
    with session.no_autoflush:  # signals are written with Core, never pending in the session
        for customer_id, event_id, at, risk, stage in await session.execute(query, params):
            found[customer_id].append(_ScoreSignal(event_id, as_utc(at), risk, stage))
    return found
