"""Rescorings queued during a transaction and scored and written together just before it commits.

A rescoring appends a history row, replaces the customer's current row, adds a purchase (for purchases)
and enqueues score.updated. Done one event at a time, that is a read of the current score, a model call
and four or five writes per event. Instead, each rescoring is queued with the customer's state as it
stood after its event, and just before the transaction commits the whole queue (a consumer batch, a
chunk of a rescoring job, a batch of the silent-customer sweep) is:

- scored in one call (scorer.compute_batch: one churn-model matrix, one set of value closed forms),
- compared with the customers' current scores, read in one query (the `previous` of score.updated;
  several rescorings of one customer in the batch chain, each the previous of the next published one;
  of a run of history rescorings of one customer only the last is published, Pending.add),
- written: one INSERT .. RETURNING for the history, one upsert of the current rows (each customer's
  last score), one insert for purchases and one for the outbox (servicekit.outbox.writer's
  synchronous door, as enqueue uses it).

Nothing is written if the transaction rolls back, and nothing is published before it commits, exactly
as when each event wrote its own rows. A failure while scoring fails the commit, so the consumer's
one-message-at-a-time fallback finds the event that caused it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from contracts.scoring import ScoreUpdated, ScoreValues
from servicekit.outbox.writer import event_source, outbox_row, write_rows
from servicekit.sql import KEYS, chunks, column_arrays, dialect_insert, for_each_key, insert_from_arrays, on_postgres
from servicekit.unit_of_work import UnitOfWork
from services.scoring.scores.features import FeatureState
from services.scoring.scores.models import CurrentScore, Purchase, ScoreRecord, TierChange
from services.scoring.scores.rules import RuleWeights
from services.scoring.scores.scorer import ActiveModels, Computed, compute_batch, jsonable


@dataclass
class Rescore:
    """One queued rescoring: the state after its event, and its lineage."""

    state: FeatureState
    as_of: datetime
    caused_by: str
    caused_by_type: str
    models: ActiveModels
    weights: RuleWeights
    computed_at: datetime
    correlation_id: str | None  # of the event being handled, not of the commit
    computed: Computed | None = None  # already scored by the caller (the sweep), or at flush
    # The trace context of the event's handling (servicekit.tracing), so score.updated continues its trace.
    trace: dict[str, str] = field(default_factory=dict)
    # Caused by an event older than the history horizon: when a later such rescoring of the customer
    # follows in the same batch, this one is written to the score history but not published.
    history: bool = False
    publish: bool = True  # score.updated for it (False: a later history rescoring of the batch carries it)
    previous_as_of: datetime | None = None  # the sweep's last look at the customer (score.updated carries it)

    @property
    def customer_id(self) -> str:
        return self.state.customer_id


@dataclass
class Pending:
    """A unit of work's queue, written by its session's commit (hooked on first use) and emptied then."""

    rescores: list[Rescore] = field(default_factory=list)  # in order
    last_of: dict[str, int] = field(default_factory=dict)  # customer id -> index of its last rescoring
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)  # interaction id -> row
    # Current scores read with the batch's features rows (None: never scored), so the next flush need not
    # read them again; that flush drops them (what it writes replaces them).
    current: dict[str, ScoreValues | None] = field(default_factory=dict)
    hooked: bool = False  # the session's before_commit and after_rollback call flush_pending and clear

    def take(self) -> tuple[list[Rescore], dict[str, dict[str, Any]]]:
        """What is queued, leaving the queue empty."""
        taken = self.rescores, self.purchases
        self.rescores, self.purchases, self.last_of = [], {}, {}
        return taken

    def add(self, rescore: Rescore) -> None:
        """Queue a rescoring. History after history of the same customer unpublishes the earlier one: each
        keeps its row in the score history (training reads a customer's score as of each event), but only
        the batch's last score of the run is published, so an import of many events per customer sends one
        score.updated per customer and batch, not one per event, to every consumer of scores."""
        last = self.last_of.get(rescore.customer_id)
        if rescore.history and last is not None and self.rescores[last].history:
            self.rescores[last].publish = False
        self.last_of[rescore.customer_id] = len(self.rescores)
        self.rescores.append(rescore)

    def clear(self, _session: Session | None = None) -> None:
        """Drop what is queued (the transaction rolled back: nothing of it may be written later)."""
        self.take()

    def forget_customer(self, customer_id: str) -> None:
        """An erased customer's unwritten scores and purchases must not be written after its erasure."""
        self.rescores = [r for r in self.rescores if r.customer_id != customer_id]
        self.last_of = {r.customer_id: i for i, r in enumerate(self.rescores)}
        self.purchases = {k: v for k, v in self.purchases.items() if v["customer_id"] != customer_id}
        self.current.pop(customer_id, None)


def pending(uow: UnitOfWork) -> Pending:
    found = uow.state(Pending)
    if not found.hooked:
        found.hooked = True
        sync = uow.session.sync_session
        event.listen(sync, "before_commit", partial(flush_pending, pending=found))
        event.listen(sync, "after_rollback", found.clear)
    return found


def add_rescore(uow: UnitOfWork, rescore: Rescore) -> None:
    pending(uow).add(rescore)


def add_purchase(uow: UnitOfWork, row: dict[str, Any]) -> None:
    pending(uow).purchases.setdefault(row["interaction_id"], row)


def forget_customer(uow: UnitOfWork, customer_id: str) -> None:
    uow.state(Pending).forget_customer(customer_id)


def score_all(rescores: list[Rescore]) -> None:
    """Score every rescoring not yet scored, one compute_batch per (models, weights) in the queue."""
    groups: dict[tuple[int, RuleWeights], list[Rescore]] = {}
    for r in rescores:
        if r.computed is None:
            groups.setdefault((id(r.models), r.weights), []).append(r)
    for group in groups.values():
        computed = compute_batch([(r.state, r.as_of) for r in group], group[0].models, group[0].weights)
        for r, c in zip(group, computed, strict=True):
            r.computed = c


VALUE_COLUMNS = ("churn_risk", "health", "value_tier", "lifecycle_stage", "p_alive", "clv", "expected_purchases")


@cache
def _current_values_query(postgres: bool) -> Any:
    t = CurrentScore.__table__  # type: ignore[attr-defined]
    columns = [t.c[name] for name in VALUE_COLUMNS]
    return for_each_key(select(t.c.customer_id, *columns), t.c.customer_id, postgres=postgres)


def current_values(
    session: Session, customer_ids: Iterable[str], known: dict[str, ScoreValues | None] | None = None
) -> dict[str, ScoreValues]:
    """The customers' current scores, as score.updated carries them (absent: never scored); those in
    `known` (read earlier in the transaction) are not read again."""
    known = known or {}
    wanted = set(customer_ids)
    out = {i: held for i in wanted & known.keys() if (held := known[i]) is not None}
    ids = sorted(wanted - known.keys())
    for chunk in chunks(ids):
        for row in session.execute(_current_values_query(on_postgres(session)), {KEYS: list(chunk)}):
            values = row._asdict()
            out[values.pop("customer_id")] = ScoreValues(**values)
    return out


def flush_pending(session: Session, *, pending: Pending) -> None:
    """Score and write what is pending (before commit; also usable by code that reads in the same transaction)."""
    rescores, purchases = pending.take()
    known, pending.current = pending.current, {}
    if not rescores and not purchases:
        return
    upsert_insert = dialect_insert(session)
    if rescores:
        score_all(rescores)
        previous: dict[str, ScoreValues | None] = dict(
            current_values(session, (r.customer_id for r in rescores), known)
        )
        published = dict(previous)
        source = event_source(session)
        history: list[dict[str, Any]] = []
        snapshots: list[dict[str, Any]] = []  # history only: the current row has no snapshot
        last: dict[str, int] = {}  # customer id -> index of its last history row
        outbox: list[dict[str, Any]] = []
        tiers: list[dict[str, Any]] = []  # tier changes (services.scoring.scores.models.TierChange)
        for r in rescores:
            computed = r.computed
            assert computed is not None
            lineage = {"caused_by": r.caused_by, "caused_by_type": r.caused_by_type}
            times = {"as_of": r.as_of, "computed_at": r.computed_at}
            history.append({"customer_id": r.customer_id, **computed.columns(), **lineage, **times})
            snapshots.append(jsonable(computed.snapshot))
            last[r.customer_id] = len(history) - 1
            current = computed.values()
            if r.publish:  # its `previous`: the last score published, what consumers of scores hold
                update = ScoreUpdated(
                    customer_id=r.customer_id,
                    previous=published.get(r.customer_id),
                    current=current,
                    factors=computed.churn_factors,
                    model_version=computed.model_version,
                    caused_by=r.caused_by,
                    computed_at=r.computed_at,
                    as_of=r.as_of,
                    cause=r.caused_by_type,
                    last_event_at=r.state.last_event_at,
                    previous_as_of=r.previous_as_of,
                )
                outbox.append(outbox_row(update, source=source, correlation_id=r.correlation_id, trace=r.trace))
                published[r.customer_id] = current
            before = previous.get(r.customer_id)
            if before is None or before.value_tier != current.value_tier:
                tiers.append({"customer_id": r.customer_id, "tier": current.value_tier, "as_of": r.as_of})
            previous[r.customer_id] = current
        rows = [{**row, "snapshot": snap} for row, snap in zip(history, snapshots, strict=True)]
        ids = _insert_history(session, rows)
        current_rows = [{**history[i], "score_id": ids[i]} for i in last.values()]
        if on_postgres(session):
            names = tuple(current_rows[0])
            session.execute(_current_upsert(names), column_arrays(_CURRENT, names, current_rows))
        else:
            upsert = upsert_insert(_CURRENT)
            keep = {c.name: upsert.excluded[c.name] for c in _CURRENT.columns if c.name != "customer_id"}
            session.execute(upsert.on_conflict_do_update(index_elements=["customer_id"], set_=keep), current_rows)
        if tiers:
            session.execute(insert(TierChange.__table__), tiers)  # type: ignore[attr-defined]
        write_rows(session, outbox)
    if purchases:
        rows = list(purchases.values())
        if on_postgres(session):
            names = tuple(rows[0])
            session.execute(_purchase_insert(names), column_arrays(_PURCHASES, names, rows))
        else:
            stmt = upsert_insert(_PURCHASES).on_conflict_do_nothing(index_elements=["interaction_id"])
            session.execute(stmt, rows)


_CURRENT = CurrentScore.__table__  # type: ignore[attr-defined]
_PURCHASES = Purchase.__table__  # type: ignore[attr-defined]


# PostgreSQL: the current rows and the purchases each as one statement over arrays (insert_from_arrays). An
# executemany ran the statement once per row on the server (a bind and an execute each).
@cache
def _current_upsert(names: tuple[str, ...]) -> Any:
    upsert = insert_from_arrays(_CURRENT, names)
    keep = {n: upsert.excluded[n] for n in names if n != "customer_id"}
    return upsert.on_conflict_do_update(index_elements=["customer_id"], set_=keep)


@cache
def _purchase_insert(names: tuple[str, ...]) -> Any:
    return insert_from_arrays(_PURCHASES, names).on_conflict_do_nothing(index_elements=["interaction_id"])


def _insert_history(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the score history rows; their ids, in the rows' order."""
    table = ScoreRecord.__table__  # type: ignore[attr-defined]
    if not on_postgres(session):
        return list(session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    names = tuple(rows[0])
    # One SQL text for any batch size (a multi-row VALUES list had one per size: a prepared statement each,
    # per connection and backend). The rows are inserted in their order, so their ids ascend in it.
    found = session.execute(_history_statement(names), column_arrays(table, names, rows)).scalars()
    return sorted(found)


@cache
def _history_statement(names: tuple[str, ...]) -> Any:
    table = ScoreRecord.__table__  # type: ignore[attr-defined]
    return insert_from_arrays(table, names).returning(table.c.id)
