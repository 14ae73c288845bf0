"""The reads of one read-model refresh (outcomes/read_model.py) in one round trip each.

A refresh of a consumer batch's customers used to send seven reads: the look-back state, the advisory
locks, the replica, the latest scores, the status changes, the alerts and the stored contribution rows,
each a round trip of its own on PostgreSQL, whatever the batch's size. Here:

- ``lock_with_lookback``: the look-back state (FOR SHARE, as before, so a rebuild chunk and a refresh
  still wait for each other) and then the customers' advisory locks, in that order, in one statement;
- ``read``: the customers' facts and their stored rows (and, where asked, the look-back) as one
  UNION ALL of tagged rows, which ``assemble`` (pure) turns back into what the separate reads gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    String,
    cast,
    literal_column,
    null,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from servicekit.sql import KEYS, for_each_key
from servicekit.types import UtcDateTime, as_utc
from services.retention.alerts.models import Alert
from services.retention.outcomes.core import AlertFact, CustomerFact
from services.retention.outcomes.models import MetricFact, MetricTotalsState
from services.retention.replica.models import Customer, CustomerScore, StatusChange

F = MetricFact.__table__  # type: ignore[attr-defined]
S = MetricTotalsState.__table__  # type: ignore[attr-defined]

Row = tuple[Any, ...]  # a contribution row: (customer_id, measure, rule, tier, segment, lo, t, u, value)
Replica = tuple[str | None, str | None, datetime | None]  # (tier, segment, first_seen)

# What each tagged row of ``read`` is; its columns: (kind, customer_id, s1..s5 (text), d1..d3 (times), n).
REPLICA, SCORE, CHANGE, ALERT, STORED, STATE = range(6)
_TEXTS, _TIMES = 5, 3

# The look-back state's row lock first (FOR SHARE, in a materialized CTE), then the advisory locks of the
# customers (ordered by key), in a LATERAL subquery that depends on the state's row, so it runs only once
# that row is locked: the order of the separate statements (a rebuild chunk takes the state FOR UPDATE and
# then the same advisory locks; the reverse order here could deadlock with it). No row (never built): no
# lock is taken and the caller takes them as before.
_LOCK_WITH_LOOKBACK = text(
    "WITH state AS MATERIALIZED (SELECT lookback_seconds FROM metric_totals_state WHERE id = 1 FOR SHARE)"
    " SELECT state.lookback_seconds, locked.n FROM state CROSS JOIN LATERAL"
    " (SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(keys.k) FROM"
    " (SELECT DISTINCT hashtextextended(i, 7263) AS k FROM unnest(CAST(:ids AS text[])) AS i ORDER BY k) AS keys"
    " WHERE state.lookback_seconds IS NOT NULL) AS taken) AS locked"
)


def lock_with_lookback(conn: Connection, ids: Sequence[str]) -> timedelta | None:
    """PostgreSQL: share-lock the look-back state and take the customers' advisory locks; the look-back.
    None: no state row, and no lock taken."""
    found = conn.execute(_LOCK_WITH_LOOKBACK, {"ids": list(ids)}).one_or_none()
    return None if found is None else timedelta(seconds=found[0])


def _tagged(
    kind: int,
    customer_id: ColumnElement[Any],
    texts: Sequence[ColumnElement[Any]] = (),
    times: Sequence[ColumnElement[Any]] = (),
    n: ColumnElement[Any] | None = None,
) -> list[ColumnElement[Any]]:
    """One branch's columns, padded with typed NULLs (the first branch's types are the result's)."""
    padded_texts = [cast(c, String) for c in texts] + [cast(null(), String)] * (_TEXTS - len(texts))
    padded_times = [type_coerce(c, UtcDateTime()) for c in times] + [cast(null(), UtcDateTime())] * (
        _TIMES - len(times)
    )
    columns = [
        literal_column(str(kind), Integer),
        cast(customer_id, String),
        *padded_texts,
        *padded_times,
        cast(n if n is not None else null(), BigInteger),
    ]
    return [c.label(f"c{k}") for k, c in enumerate(columns)]


@cache
def read_statement(*, postgres: bool, with_state: bool) -> Any:
    """The customers' replica rows, latest scores, status changes, alerts and stored rows (and the look-back
    state) as one UNION ALL of tagged rows; the ids bound as KEYS. Built once: building it takes more CPU
    than running it."""

    def among(query: Any, key: Any) -> Any:
        # Key by key (for_each_key): a small, churned table's plan otherwise scans it whole for each refresh.
        return for_each_key(query, key, postgres=postgres)

    branches = [
        among(
            select(*_tagged(REPLICA, Customer.customer_id, (Customer.tier, Customer.segment), (Customer.first_seen,))),
            Customer.customer_id,
        ),
        among(
            select(*_tagged(SCORE, CustomerScore.customer_id, (CustomerScore.value_tier,))), CustomerScore.customer_id
        ),
        among(
            select(*_tagged(CHANGE, StatusChange.customer_id, (StatusChange.status,), (StatusChange.at,))),
            StatusChange.customer_id,
        ),
        among(
            select(
                *_tagged(
                    ALERT,
                    Alert.customer_id,
                    (Alert.reason, Alert.rule_id, Alert.outcome),
                    (Alert.first_triggered_at,),
                    cast(Alert.control, Integer),
                )
            ),
            Alert.customer_id,
        ),
        among(
            select(
                *_tagged(
                    STORED,
                    F.c.customer_id,
                    (F.c.measure, F.c.rule, F.c.tier, F.c.segment, F.c.id),  # the row's id: the delete's key
                    (F.c.lo, F.c.t, F.c.u),
                    F.c.value,
                )
            ),
            F.c.customer_id,
        ),
    ]
    if with_state:
        branches.append(select(*_tagged(STATE, literal_column("''"), n=S.c.lookback_seconds)).where(S.c.id == 1))
    return union_all(*branches)


@dataclass
class Read:
    """What one refresh reads: each customer's facts (known to any fact table), their stored rows, and the
    look-back (when it was asked for and is built)."""

    facts: list[tuple[CustomerFact, list[AlertFact]]] = field(default_factory=list)
    stored: dict[str, list[Row]] = field(default_factory=dict)
    row_ids: dict[str, list[int]] = field(default_factory=dict)  # of the stored rows
    lookback: timedelta | None = None


def read(conn: Connection, ids: Sequence[str], *, with_state: bool) -> Read:
    """The facts and stored rows of these customers (and the look-back when with_state), one statement."""
    postgres = conn.dialect.name == "postgresql"
    keys = list(dict.fromkeys(ids))  # each once: a key looked up twice would bring its rows twice
    return assemble(conn.execute(read_statement(postgres=postgres, with_state=with_state), {KEYS: keys}), ids)


def assemble(rows: Iterable[Sequence[Any]], ids: Sequence[str]) -> Read:
    """Tagged rows back into facts by customer (in the order of ids) and stored rows, as the separate reads
    gave them (read_model.load_facts and its stored rows)."""
    replicas: dict[str, Replica] = {}
    scores: dict[str, str | None] = {}
    changes: dict[str, list[tuple[datetime, str]]] = {}
    alerts: dict[str, list[AlertFact]] = {}
    stored: dict[str, list[Row]] = {}
    found = Read()
    for kind, customer_id, s1, s2, s3, s4, s5, d1, d2, d3, n in rows:
        if kind == REPLICA:
            replicas[customer_id] = (s1, s2, d1)
        elif kind == SCORE:
            scores[customer_id] = s1
        elif kind == CHANGE:
            changes.setdefault(customer_id, []).append((as_utc(d1), s1))
        elif kind == ALERT:
            alerts.setdefault(customer_id, []).append(AlertFact(customer_id, s1, as_utc(d1), s2, s3, bool(n)))
        elif kind == STORED:
            row = (customer_id, s1, s2, s3, s4, as_utc(d1), as_utc(d2), as_utc(d3), int(n))
            stored.setdefault(customer_id, []).append(row)
            found.row_ids.setdefault(customer_id, []).append(int(s5))
        elif kind == STATE:
            found.lookback = timedelta(seconds=n)
    found.facts = list(facts_of(ids, replicas, scores, changes, alerts))
    found.stored = stored
    return found


def facts_of(
    ids: Sequence[str],
    replicas: Mapping[str, Replica],
    scores: Mapping[str, str | None],
    changes: Mapping[str, list[tuple[datetime, str]]],
    alerts: Mapping[str, list[AlertFact]],
) -> Iterator[tuple[CustomerFact, list[AlertFact]]]:
    """Each customer's fact (the replica's tier, else the latest score's value tier) and alerts, in the
    order of ids; a customer no table knows is left out (erased from all, or never stored)."""
    for i in ids:
        if i not in replicas and i not in scores and i not in changes and i not in alerts:
            continue
        tier, segment, first_seen = replicas.get(i, (None, None, None))
        yield (
            CustomerFact(
                customer_id=i,
                tier=tier or scores.get(i),
                segment=segment,
                first_seen=as_utc(first_seen) if first_seen else None,
                status_changes=tuple(changes.get(i, ())),
            ),
            alerts.get(i, []),
        )


def difference(
    stored: Sequence[Row], row_ids: Sequence[int], fresh: Sequence[Row]
) -> tuple[list[int], list[Row], list[Row]]:
    """What turns a customer's stored rows into its fresh ones: (the ids of the stored rows to delete, those
    rows, the fresh rows to insert), as multisets; a row in both is left as it is. The ids are aligned with
    ``stored`` (as ``read`` gives them); the rows to insert come in the order of ``fresh``."""
    surplus = Counter(fresh)
    surplus.subtract(stored)  # > 0: that many more wanted; < 0: that many stored too many
    gone_ids: list[int] = []
    gone: list[Row] = []
    for row, row_id in zip(stored, row_ids, strict=True):
        if surplus[row] < 0:
            surplus[row] += 1
            gone_ids.append(row_id)
            gone.append(row)
    added: list[Row] = []
    for row in fresh:
        if surplus[row] > 0:
            surplus[row] -= 1
            added.append(row)
    return gone_ids, gone, added
