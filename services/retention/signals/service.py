"""Signals: the consumed events the rules watch, stored once, and the score history the rules read.

A consumer batch stores its signals before any event is applied (on PostgreSQL in the statement that takes
the batch's locks, services/retention/batch_rows.py; else one statement per chunk);
`BatchSignals`, this transaction's typed state, remembers which of them are new and not applied yet, and
holds one read of the score history for every score of the batch that needs some.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
def score_signals_in_window(postgres: bool, keys: str = KEYS, since: str = "since", until: str = "until") -> Any:
    """The bound customers' score signals at or after `since`, before `until` (the names of the bound values).
    Columns: customer id, event id, at, churn risk, lifecycle stage."""
    # Only the two values the rules read, kept in columns of their own: a signal's whole document is ten
    # times larger and would be parsed again on every read, and a busy customer has many in the window.
    columns = (Signal.customer_id, Signal.event_id, Signal.at, Signal.churn_risk, Signal.lifecycle_stage)
    in_window = (
        Signal.event_type == ScoreUpdated.event_type,
        Signal.at >= bindparam(since, type_=Signal.__table__.c.at.type),  # type: ignore[attr-defined]
        Signal.at < bindparam(until, type_=Signal.__table__.c.at.type),  # type: ignore[attr-defined]
    )
    return for_each_key(select(*columns).where(*in_window), Signal.customer_id, postgres=postgres, param=keys)


# What a batch's new scores need of the score history: [since, until) of these customers (sorted).
HistoryRequest = tuple[datetime, datetime, list[str]]


def watched(events: Sequence[Received[Any]]) -> list[Received[Any]]:
    """The batch's events the rules watch: their signals are stored before any event is applied."""
    return [e for e in events if isinstance(e.data, WATCHED)]


def history_request(watched: Sequence[Received[Any]], stored: set[str], rules: Sequence[Rule]) -> HistoryRequest | None:
    """The score history the batch's new scores need under these rules (None: none)."""
    needing = [
        e.data for e in watched if e.id in stored and isinstance(e.data, ScoreUpdated) and needs_history(e.data, rules)
    ]
    if not needing:
        return None
    times = [as_utc(d.computed_at) for d in needing]
    return min(times) - history_window(rules), max(times), sorted({d.customer_id for d in needing})


async def loaded(
    uow: UnitOfWork,
    watched: Sequence[Received[Any]],
    stored: set[str],
    read: tuple[HistoryRequest | None, Sequence[Any]] = (None, ()),
) -> None:
    """Keep which of the batch's watched signals were stored now (`stored`: by the batch preload's statement,
    services/retention/batch_rows.py), and the score history its new scores need: `read`'s rows when they
    answer the request the rules make (the preload guessed it with the catalog it had), else read once."""
    if not watched:
        return
    state = uow.state(BatchSignals)
    state.unapplied.update({e.id: e.id in stored for e in watched})
    request = history_request(watched, stored, (await catalog(uow)).rules)
    if request is None:
        return
    since, until, ids = request
    guessed, rows = read
    found = grouped(ids, rows) if guessed == request else await _read_score_signals(uow, ids, since, until)
    state.history = _BatchHistory(since, until, found)


_SIGNAL_TIME = {
    ScoreUpdated: lambda d: d.computed_at,
    ComplaintOpened: lambda d: d.opened_at,
    ComplaintOverdue: lambda d: d.due_at,
    SurveyAnswered: lambda d: d.answered_at,
}


def signal_row(event: Received[Any]) -> dict[str, Any]:
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


async def store(uow: UnitOfWork, events: Sequence[Received[Any]]) -> set[str]:
    """Store the events' signals (a statement per chunk), skipping event ids stored already; the ids stored now."""
    stored: set[str] = set()
    postgres = on_postgres(uow.session)
    query = store_statement(postgres)
    for chunk in chunks(events):
        rows = [signal_row(e) for e in chunk]
        bound = column_arrays(SIGNALS, SIGNAL_COLUMNS, rows) if postgres else rows
        stored.update((await uow.session.execute(query, bound)).scalars())
    return stored


SIGNALS = Signal.__table__  # type: ignore[attr-defined]
SIGNAL_COLUMNS = ("event_id", "event_type", "customer_id", "at", "data", "churn_risk", "lifecycle_stage")


@cache
def store_statement(postgres: bool) -> Any:
    """Built once. On PostgreSQL the rows travel as arrays, one SQL text for any batch size (a multi-row
    VALUES list had one per size: a prepared statement each, per connection and backend)."""
    insert = insert_from_arrays(SIGNALS, SIGNAL_COLUMNS) if postgres else sqlite.insert(SIGNALS)
    return insert.on_conflict_do_nothing(index_elements=[SIGNALS.c.event_id]).returning(SIGNALS.c.event_id)


async def record_signal(uow: UnitOfWork, event: Received[Any]) -> bool:
    """Store the signal; False if this event id is stored already (stored by preload with its batch, if it was)."""
    unapplied = uow.state(BatchSignals).unapplied
    if event.id in unapplied:
        return unapplied.pop(event.id)
    return bool(await store(uow, [event]))


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
    uow: UnitOfWork, customer_ids: Sequence[str], since: datetime, until: datetime
) -> dict[str, list[_ScoreSignal]]:
    """The customers' stored score signals in [since, until), by customer (every customer id a key)."""
    session = uow.session
    query = score_signals_in_window(on_postgres(session))
    params = {KEYS: list(customer_ids), "since": since, "until": until}
    with session.no_autoflush:  # signals are written with Core, never pending in the session
        return grouped(customer_ids, await session.execute(query, params))


def grouped(customer_ids: Sequence[str], rows: Iterable[Any]) -> dict[str, list[_ScoreSignal]]:
    """score_signals_in_window's rows by customer, in read order (every customer id a key)."""
    found: dict[str, list[_ScoreSignal]] = {i: [] for i in customer_ids}
    for customer_id, event_id, at, risk, stage in rows:
        found[customer_id].append(_ScoreSignal(event_id, as_utc(at), risk, stage))
    return found
