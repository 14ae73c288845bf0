"""The metrics' read model kept up to date: each customer's contribution rows and their monthly totals.

Whatever changes a customer's metric facts (an alert raised, re-triggered earlier or resolved, a status
change, the replica's first sight, tier or segment, a new score or value tier, an erasure) calls
``touch`` in its transaction. Just before that transaction commits, after every other row it holds is
written, the touched customers' facts are read again, their contribution rows recomputed
(outcomes/contributions.py) and the difference applied to metric_facts and metric_totals: in the same
transaction as the event's inbox claim, so a redelivered event (dropped by the inbox) changes nothing,
and recomputing a customer whose facts did not change writes nothing.

A new look-back rebuilds every customer's rows in chunks, one transaction each (``start_rebuild``, then
``rebuild_step`` until it says done), so events commit between chunks instead of waiting for the whole
store; /retention/metrics answers from the facts until the last chunk is done (``lookback_of`` is None
meanwhile). Events during a rebuild recompute their customers with the new look-back, whichever side of
the chunk cursor they are on, so the finished rows are the one-shot ``rebuild``'s.

Synchronous (a Connection): it runs in the session's before_commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    true,
    union,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from servicekit.db import hold_until_commit
from servicekit.sql import IN_CHUNK, chunks, column_arrays, insert_from_arrays, one_of
from servicekit.types import as_utc
from services.retention.alerts.models import Alert
from services.retention.outcomes import contributions as shares
from services.retention.outcomes import refresh_reads as reads
from services.retention.outcomes.core import AlertFact, CustomerFact
from services.retention.outcomes.models import MetricFact, MetricTotal, MetricTotalsState
from services.retention.replica.models import Customer, CustomerScore, StatusChange

FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)  # lo or u of none
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # t of none
DEFAULT_LOOKBACK = timedelta(days=180)  # RetentionSettings.warning_lookback_days' default
REBUILD_CHUNK = 1000  # customers per transaction of a rebuild: what an event may wait for
ALL, TIER, SEGMENT, RULE = "all", "tier", "segment", "rule"

F = MetricFact.__table__  # type: ignore[attr-defined]
T = MetricTotal.__table__  # type: ignore[attr-defined]
S = MetricTotalsState.__table__  # type: ignore[attr-defined]
TOTAL_KEY = ("kind", "key", "measure", "lo_month", "t_month", "u_month")
_TOUCHED = "retention.metric_totals"

Row = tuple[Any, ...]  # (customer_id, measure, rule, tier, segment, lo, t, u, value)


def month_of(at: datetime) -> int:
    at = as_utc(at)
    return at.year * 12 + at.month - 1


def month_start(month: int) -> datetime:
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


def touch(session: AsyncSession | Session, customer_id: str) -> None:
    """The customer's metric facts change in this transaction: recompute their share before it commits."""
    hold_until_commit(session, _TOUCHED, [{"customer_id": customer_id}], _refresh_touched, last=True)


def _refresh_touched(session: Session, rows: list[dict[str, Any]]) -> None:
    session.flush()  # rows the transaction added to the session, new latest scores among them
    refresh(session.connection(), sorted({r["customer_id"] for r in rows}))


def _state(conn: Connection, *, lock: str | None = None) -> tuple[timedelta, str | None] | None:
    """(look-back the rows are built or being rebuilt with, the rebuild's cursor or None when complete);
    None: never built. lock: "share" (a refresh: rebuild chunks wait for it) or "update" (a rebuild chunk:
    refreshes wait for it), on PostgreSQL."""
    query = select(S.c.lookback_seconds, S.c.rebuilt_after).where(S.c.id == 1)
    if lock is not None:
        query = query.with_for_update(read=lock == "share")
    found = conn.execute(query).one_or_none()
    return None if found is None else (timedelta(seconds=found[0]), found[1])


def lookback_of(conn: Connection) -> timedelta | None:
    """The look-back the rows are complete for (None: never built, or a rebuild is under way)."""
    state = _state(conn)
    return state[0] if state is not None and state[1] is None else None


def _ensure_lookback(conn: Connection) -> timedelta:
    found = _state(conn, lock="share")
    if found is None:  # a store whose tables were created without the migration: nothing was built yet
        seconds = int(DEFAULT_LOOKBACK.total_seconds())
        conn.execute(_insert(conn)(S).values(id=1, lookback_seconds=seconds).on_conflict_do_nothing())
        found = _state(conn, lock="share")
    return found[0] if found is not None else DEFAULT_LOOKBACK


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def load_facts(conn: Connection, ids: Sequence[str]) -> Iterator[tuple[CustomerFact, list[AlertFact]]]:
    """The facts the metrics read of these customers (as outcomes/service.py reads them), by customer: one
    statement per table (a rebuild's pages; a refresh reads them in one, refresh_reads.read)."""
    pg = _postgres(conn)
    replicas: dict[str, reads.Replica] = {
        r.customer_id: (r.tier, r.segment, r.first_seen)
        for r in conn.execute(
            select(Customer.customer_id, Customer.tier, Customer.segment, Customer.first_seen).where(
                one_of(Customer.customer_id, ids, postgres=pg)
            )
        )
    }
    scores = dict(
        conn.execute(
            select(CustomerScore.customer_id, CustomerScore.value_tier).where(
                one_of(CustomerScore.customer_id, ids, postgres=pg)
            )
        ).all()
    )
    changes: dict[str, list[tuple[datetime, str]]] = {}
    for customer_id, at, status in conn.execute(
        select(StatusChange.customer_id, StatusChange.at, StatusChange.status).where(
            one_of(StatusChange.customer_id, ids, postgres=pg)
        )
    ):
        changes.setdefault(customer_id, []).append((as_utc(at), status))
    alerts: dict[str, list[AlertFact]] = {}
    for r in conn.execute(
        select(
            Alert.customer_id, Alert.reason, Alert.first_triggered_at, Alert.rule_id, Alert.outcome, Alert.control
        ).where(one_of(Alert.customer_id, ids, postgres=pg))
    ):
        alerts.setdefault(r.customer_id, []).append(
            AlertFact(r.customer_id, r.reason, as_utc(r.first_triggered_at), r.rule_id, r.outcome, bool(r.control))
        )
    yield from reads.facts_of(ids, replicas, scores, changes, alerts)


def rows_of(fact: CustomerFact, alerts: Sequence[AlertFact], lookback: timedelta) -> list[Row]:
    tier, segment = shares.tier_key(fact), shares.segment_key(fact)
    return [
        (
            fact.customer_id,
            c.measure,
            c.rule,
            tier,
            segment,
            c.lo or FAR_PAST,
            c.t or FAR_FUTURE,
            c.u or FAR_PAST,
            c.value,
        )
        for c in shares.contributions(fact, alerts, lookback)
    ]


def total_keys(row: Row) -> Iterator[tuple[str, str, str, int, int, int]]:
    """The totals a row counts in: all, its tier and segment (rows of no rule), or its rule."""
    _, measure, rule, tier, segment, lo, t, u, _ = row
    months = (month_of(lo), month_of(t), month_of(u))
    if rule is None:
        yield (ALL, "", measure, *months)
        yield (TIER, tier, measure, *months)
        yield (SEGMENT, segment, measure, *months)
    else:
        yield (RULE, rule, measure, *months)


def _stored(conn: Connection, ids: Sequence[str]) -> dict[str, list[Row]]:
    columns = (F.c.customer_id, F.c.measure, F.c.rule, F.c.tier, F.c.segment, F.c.lo, F.c.t, F.c.u, F.c.value)
    found: dict[str, list[Row]] = {}
    for r in conn.execute(select(*columns).where(one_of(F.c.customer_id, ids, postgres=_postgres(conn)))):
        found.setdefault(r.customer_id, []).append((*r[:5], as_utc(r[5]), as_utc(r[6]), as_utc(r[7]), int(r[8])))
    return found


# One refresh of a customer at a time, so none recomputes from facts another has since changed (under READ
# COMMITTED, the statements after the lock see what the holder committed). Transaction-scoped advisory locks,
# taken at commit in one order (by key): no row lock is taken, so nothing waits in a cycle with the
# handlers' own row locks (an API resolving an alert while a consumer's batch churns its customer).
_LOCK_CUSTOMERS = text(
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(i, 7263) AS k"
    " FROM unnest(CAST(:ids AS text[])) AS i ORDER BY k) AS keys"
)


def refresh(conn: Connection, ids: Sequence[str]) -> None:
    """Recompute these customers' rows from their facts; write the difference to the rows and the totals."""
    _refresh(conn, ids, None)


def _refresh(conn: Connection, ids: Sequence[str], lookback: timedelta | None) -> None:
    """lookback None: the stored one, read (under the state's share lock on PostgreSQL) with the first chunk."""
    pg = _postgres(conn)
    for chunk in map(list, chunks(list(ids), IN_CHUNK)):
        if pg and lookback is None:
            lookback = reads.lock_with_lookback(conn, chunk)
            if lookback is None:  # never built: create the state, then lock as below
                lookback = _ensure_lookback(conn)
                conn.execute(_LOCK_CUSTOMERS, {"ids": chunk})
        elif pg:
            conn.execute(_LOCK_CUSTOMERS, {"ids": chunk})
        found = reads.read(conn, chunk, with_state=lookback is None)
        if lookback is None:
            lookback = found.lookback if found.lookback is not None else _ensure_lookback(conn)
        fresh = {fact.customer_id: rows_of(fact, alerts, lookback) for fact, alerts in found.facts}
        # Only the rows that differ are written: a customer's rows grow with its alerts, and rewriting all of
        # them for one new alert left as many dead rows and made a batch's memory grow with the history.
        gone: list[int] = []
        delta: Counter[tuple[str, str, str, int, int, int]] = Counter()
        rows: list[Row] = []
        for i in dict.fromkeys(chunk):
            ids_of, old, new = reads.difference(found.stored.get(i, []), found.row_ids.get(i, []), fresh.get(i, []))
            gone += ids_of
            rows += new
            for row in old:
                delta.subtract(total_keys(row))
            for row in new:
                delta.update(total_keys(row))
        if not gone and not rows:
            continue
        if pg and len(rows) <= IN_CHUNK and len(delta) <= IN_CHUNK // 2:
            _replace_rows_postgres(conn, gone, rows, delta)
            continue
        for part in chunks(gone, IN_CHUNK):
            if pg:
                conn.execute(_delete_by_id(), {"gone": list(part)})
            else:
                conn.execute(delete(F).where(F.c.id.in_(list(part))))
        _insert_rows(conn, rows)
        add_totals(conn, delta)


def _replace_rows_postgres(
    conn: Connection, gone: Sequence[int], rows: Sequence[Row], delta: Counter[tuple[str, str, str, int, int, int]]
) -> None:
    """The changed customers' rows deleted (by id: the read's, which no other transaction can have changed
    under the customers' advisory locks), their new rows inserted and the totals added in one statement."""
    values = [dict(zip(_FACT_COLUMNS, row, strict=True)) for row in rows]
    totals = _total_values(delta)
    parameters: dict[str, Any] = {"gone": list(gone)}
    parameters |= column_arrays(F, _FACT_COLUMNS, values, prefix="_f_") if values else {}
    parameters |= column_arrays(T, _TOTAL_COLUMNS, totals, prefix="_t_") if totals else {}
    conn.execute(_replace_statement(bool(values), bool(totals)), parameters)


@cache
def _replace_statement(rows: bool, totals: bool) -> Any:
    """Data-modifying CTEs: each sees the table as it was before the statement, so the delete leaves the
    inserted rows alone. Built once per shape: building it takes more CPU than running it."""
    parts: list[Any] = [_delete_by_id()]
    if rows:
        parts.append(insert_from_arrays(F, _FACT_COLUMNS, prefix="_f_"))
    if totals:
        parts.append(_add_on_conflict(insert_from_arrays(T, _TOTAL_COLUMNS, prefix="_t_")))
    *first, last = parts
    return last.add_cte(*(part.cte(f"step_{k}") for k, part in enumerate(first))) if first else last


@cache
def _delete_by_id() -> Any:
    """DELETE of the rows whose ids are bound as "gone": each found through the primary key (a LATERAL
    lookup per id), then deleted by its ctid (a TID scan). `id = ANY(:gone)` let the planner scan the whole
    table when its statistics said it was small (a generic plan, dead rows autovacuum had not caught up with)."""
    ids = func.unnest(bindparam("gone", type_=ARRAY(BigInteger))).table_valued("id").render_derived(name="gone")
    stored = F.alias("stored")
    one = select(literal_column("stored.ctid").label("tid")).where(stored.c.id == ids.c.id).offset(0).lateral("one")
    found = func.array(select(one.c.tid).select_from(ids.join(one, true())).scalar_subquery())
    return delete(F).where(literal_column("ctid") == any_(found))


_FACT_COLUMNS = ("customer_id", "measure", "rule", "tier", "segment", "lo", "t", "u", "value")


def _insert_rows(conn: Connection, rows: Iterable[Row]) -> None:
    values = [dict(zip(_FACT_COLUMNS, row, strict=True)) for row in rows]
    for chunk in chunks(values, IN_CHUNK):
        if _postgres(conn):  # one statement text for any number of rows (servicekit.sql.insert_from_arrays)
            conn.execute(insert_from_arrays(F, _FACT_COLUMNS), column_arrays(F, _FACT_COLUMNS, chunk))
        else:
            conn.execute(F.insert(), list(chunk))


def add_totals(conn: Connection, delta: Counter[tuple[str, str, str, int, int, int]]) -> None:
    """Add each count to its total (ON CONFLICT: one statement per chunk of totals; on SQLite one
    executemany of a statement built once: a multi-row VALUES list is compiled again for every batch)."""
    values = _total_values(delta)
    if values and conn.dialect.name == "sqlite":
        conn.execute(_add_total_sqlite(), values)
        return
    for chunk in chunks(values, IN_CHUNK // 2):
        if _postgres(conn):  # one statement text for any number of totals
            statement = insert_from_arrays(T, _TOTAL_COLUMNS)
            conn.execute(_add_on_conflict(statement), column_arrays(T, _TOTAL_COLUMNS, chunk))
        else:
            conn.execute(_add_on_conflict(_insert(conn)(T).values(list(chunk))))


_TOTAL_COLUMNS = (*TOTAL_KEY, "n")


def _total_values(delta: Counter[tuple[str, str, str, int, int, int]]) -> list[dict[str, Any]]:
    return [dict(zip(TOTAL_KEY, key, strict=True), n=n) for key, n in sorted(delta.items()) if n]


def _add_on_conflict(statement: Any) -> Any:
    return statement.on_conflict_do_update(index_elements=list(TOTAL_KEY), set_={"n": T.c.n + statement.excluded.n})


@cache
def _add_total_sqlite() -> Any:
    statement = sqlite.insert(T)
    return statement.on_conflict_do_update(index_elements=list(TOTAL_KEY), set_={"n": T.c.n + statement.excluded.n})


def known_ids(conn: Connection, after: str, limit: int, *, with_rows: bool = False) -> list[str]:
    """The next ids (in order) known to any table the metrics read (with_rows: or holding rows)."""
    columns = [Customer.customer_id, CustomerScore.customer_id, StatusChange.customer_id, Alert.customer_id]
    if with_rows:
        columns.append(F.c.customer_id)
    ids = union(*(select(c.label("customer_id")).where(c > after) for c in columns)).subquery()
    return list(conn.execute(select(ids.c.customer_id).order_by(ids.c.customer_id).limit(limit)).scalars())


def rebuild(conn: Connection, lookback: timedelta = DEFAULT_LOOKBACK, page: int = 2000) -> int:
    """Every customer's rows and the totals built again from the facts in one transaction (the reference
    the chunked rebuild is tested against); returns the number of customers. Totals are kept in memory
    until the end (counts only: one per group, measure and three months)."""
    seconds = int(lookback.total_seconds())
    if _state(conn, lock="update") is None:
        conn.execute(_insert(conn)(S).values(id=1, lookback_seconds=seconds).on_conflict_do_nothing())
        _state(conn, lock="update")
    conn.execute(S.update().where(S.c.id == 1).values(lookback_seconds=seconds, rebuilt_after=None))
    conn.execute(delete(F))
    conn.execute(delete(T))
    totals: Counter[tuple[str, str, str, int, int, int]] = Counter()
    after, customers = "", 0
    while ids := known_ids(conn, after, page):
        rows = [row for fact, alerts in load_facts(conn, ids) for row in rows_of(fact, alerts, lookback)]
        for row in rows:
            totals.update(total_keys(row))
        _insert_rows(conn, rows)
        after, customers = ids[-1], customers + len(ids)
    add_totals(conn, totals)
    return customers


def start_rebuild(conn: Connection, lookback: timedelta) -> bool:
    """Begin a rebuild for ``lookback`` when the rows are built (or being rebuilt) for another one (the
    setting changed); False when none is needed. Its chunks are ``rebuild_step``'s."""
    if (unlocked := _state(conn)) is not None and unlocked[0] == lookback:
        return False  # the usual answer, without taking the lock refreshes share
    state = _state(conn, lock="update")
    if state is not None and state[0] == lookback:
        return False
    seconds = int(lookback.total_seconds())
    if state is None:
        conn.execute(_insert(conn)(S).values(id=1, lookback_seconds=seconds, rebuilt_after="").on_conflict_do_nothing())
    conn.execute(S.update().where(S.c.id == 1).values(lookback_seconds=seconds, rebuilt_after=""))
    return True


def rebuild_step(conn: Connection, chunk: int = REBUILD_CHUNK) -> bool:
    """Rebuild the next ``chunk`` customers of a rebuild under way (only the rows that differ are written,
    with their totals' difference); whether one is still under way after this step. The rows stay
    consistent with the totals after every step, so events may commit between steps."""
    if (unlocked := _state(conn)) is None or unlocked[1] is None:
        return False  # the usual answer, without taking the lock refreshes share
    state = _state(conn, lock="update")
    if state is None or state[1] is None:
        return False
    lookback, after = state
    ids = known_ids(conn, after, chunk, with_rows=True)
    _refresh(conn, ids, lookback)
    conn.execute(S.update().where(S.c.id == 1).values(rebuilt_after=ids[-1] if ids else None))
    return bool(ids)
