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

from sqlalchemy.dialects import sqlite

from contracts.interaction import ComplaintOpened, ComplaintOverdue, SurveyAnswered
from contracts.scoring import ScoreUpdated
from servicekit.events.envelope import Received
from servicekit.sql import chunks, column_arrays, insert_from_arrays, on_postgres
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
    request: HistoryRequest
    signals: dict[str, list[_ScoreSignal]]

    def covers(self, customer_id: str, since: datetime, at: datetime) -> bool:
        """Whether the read answers [since, at): a score at `at` in [first, until] sees every folded score
        inside its window, so the two kept give it what all of them would."""
        r = self.request
        return customer_id in self.signals and r.since <= since <= r.edge and r.first <= at <= r.until


@dataclass
class BatchSignals:
    """The batch's signals in this transaction."""

    # Event id -> whether preload stored its signal now (False: stored before); removed once the event is applied.
    unapplied: dict[str, bool] = field(default_factory=dict)
    history: _BatchHistory | None = None  # score signals read once for the batch


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """What a batch's new scores need of the score history: [since, until) of these customers (sorted),
    the scores in [edge, first) that are not one of `own` folded to what the rules use (signals.window)."""

    since: datetime
    until: datetime
    customers: tuple[str, ...]
    edge: datetime
    first: datetime
    own: tuple[str, ...]

    def params(self, names: window.Names = window.NAMES) -> dict[str, Any]:
        """The values of window.reduced_statement(postgres, names)."""
        values = (list(self.customers), self.since, self.until, self.edge, self.first, list(self.own))
        return dict(zip(names, values, strict=True))


def watched(events: Sequence[Received[Any]]) -> list[Received[Any]]:
    """The batch's events the rules watch: their signals are stored before any event is applied."""
    return [e for e in events if isinstance(e.data, WATCHED)]


def history_request(
    watched: Sequence[Received[Any]], stored: set[str], rules: Sequence[Rule], pending: Iterable[str] = ()
) -> HistoryRequest | None:
    """The score history the batch's new scores need under these rules (None: none). Never folded: the
    batch's watched signals and the `pending` ones (stored now, not applied yet), which score_history hides."""
    needing = [
        e.data for e in watched if e.id in stored and isinstance(e.data, ScoreUpdated) and needs_history(e.data, rules)
    ]
    if not needing:
        return None
    times = [as_utc(d.computed_at) for d in needing]
    first, until = min(times), max(times)
    longest = history_window(rules)
    return HistoryRequest(
        since=first - longest,
        until=until,
        customers=tuple(sorted({d.customer_id for d in needing})),
        edge=until - window.shortest_window(list(rules), longest),
        first=first,
        own=tuple(sorted({e.id for e in watched}.union(pending))),
    )


def pending(uow: UnitOfWork) -> list[str]:
    """The signals this transaction stored and has not applied yet (score_history hides them)."""
    return [i for i, new in uow.state(BatchSignals).unapplied.items() if new]


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
    request = history_request(watched, stored, (await catalog(uow)).rules, pending(uow))
    if request is None:
        return
    guessed, rows = read
    found = grouped(request.customers, rows) if guessed == request else await _read_score_signals(uow, request)
    state.history = _BatchHistory(request, found)


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
    if cached is not None and cached.covers(customer_id, since, at):
        signals = cached.signals[customer_id]
    else:  # folding nothing (edge = first = since)
        request = HistoryRequest(since, at, (customer_id,), since, since, ())
        signals = (await _read_score_signals(uow, request))[customer_id]
    return tuple(
        ScorePoint(r.at, r.churn_risk, r.lifecycle_stage)
        for r in signals
        if since <= r.at < at and not state.unapplied.get(r.event_id)
    )


async def _read_score_signals(uow: UnitOfWork, request: HistoryRequest) -> dict[str, list[_ScoreSignal]]:
    """The requested customers' stored score signals, folded as signals.window says, by customer (every
    customer id a key)."""
    session = uow.session
    query = window.reduced_statement(on_postgres(session))
    with session.no_autoflush:  # signals are written with Core, never pending in the session
        return grouped(request.customers, await session.execute(query, request.params()))


def grouped(customer_ids: Sequence[str], rows: Iterable[Any]) -> dict[str, list[_ScoreSignal]]:
    """window.reduced_statement's rows by customer, in read order (every customer id a key)."""
    found: dict[str, list[_ScoreSignal]] = {i: [] for i in customer_ids}
    for customer_id, event_id, at, risk, stage in rows:
        found[customer_id].append(_ScoreSignal(event_id, as_utc(at), risk, stage))
    return found
