"""retention metrics' read model: each customer's contribution rows and their monthly totals, backfilled

Revision ID: 3b8e5d1f7a29
Revises: 2f6d8a1c4e97
Create Date: 2026-12-07 10:20:00.000000

The rows and totals are built from the facts already stored (replicas, scores, status changes, alerts)
with the default look-back of 180 days (RetentionSettings.warning_lookback_days); a service set to
another look-back answers /retention/metrics from the facts until the totals are rebuilt with it.

The backfill is a frozen copy of what the application computed on 2026-12-07 (outcomes/contributions.py and
read_model.rebuild, with the tables as they stood at this revision): pure and self-contained, so a later
change to the application cannot change what this revision does. A unit test holds it equal to the
application's rebuild (tests/unit/retention/test_metric_totals.py).
"""

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
import sqlmodel
from alembic import op

import servicekit.types

revision: str = "3b8e5d1f7a29"
down_revision: str | None = "2f6d8a1c4e97"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_AT = servicekit.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "metric_facts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("customer_id", _S(length=100), nullable=False),
        sa.Column("measure", _S(length=20), nullable=False),
        sa.Column("rule", _S(length=64), nullable=True),
        sa.Column("tier", _S(length=20), nullable=False),
        sa.Column("segment", _S(length=100), nullable=False),
        sa.Column("lo", _AT(timezone=True), nullable=False),
        sa.Column("t", _AT(timezone=True), nullable=False),
        sa.Column("u", _AT(timezone=True), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_facts_customer_id", "metric_facts", ["customer_id"], unique=False)
    op.create_index("ix_metric_facts_lo", "metric_facts", ["lo"], unique=False)
    op.create_index("ix_metric_facts_t", "metric_facts", ["t"], unique=False)
    op.create_index("ix_metric_facts_u", "metric_facts", ["u"], unique=False)
    op.create_index("ix_metric_facts_measure_t", "metric_facts", ["measure", "t"], unique=False)
    op.create_table(
        "metric_totals",
        sa.Column("kind", _S(length=10), nullable=False),
        sa.Column("key", _S(length=100), nullable=False),
        sa.Column("measure", _S(length=20), nullable=False),
        sa.Column("lo_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("u_month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "measure", "lo_month", "t_month", "u_month"),
    )
    op.create_table(
        "metric_totals_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lookback_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("metric_totals_state")
    op.drop_table("metric_totals")
    op.drop_index("ix_metric_facts_measure_t", table_name="metric_facts")
    op.drop_index("ix_metric_facts_u", table_name="metric_facts")
    op.drop_index("ix_metric_facts_t", table_name="metric_facts")
    op.drop_index("ix_metric_facts_lo", table_name="metric_facts")
    op.drop_index("ix_metric_facts_customer_id", table_name="metric_facts")
    op.drop_table("metric_facts")


# ---- the backfill: frozen copy (2026-12-07) of outcomes/contributions.py and read_model.rebuild ----------

LOOKBACK = timedelta(days=180)
FAR_PAST, FAR_FUTURE = datetime(1900, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
CHURNED, SAVED, UNKNOWN = "churned", "saved", "unknown"
KNOWN, HELD, CHURN, WARNED = "known", "held", "churned", "warned"
ALERTED, LOST, POSITIVE = "alerted", "lost", "positive"
TREATED, CONTROL, TREATED_LOST, CONTROL_LOST = "treated", "control", "treated_lost", "control_lost"
PAGE = 2000
_DT = sa.DateTime(timezone=True)

customers = sa.table(
    "customers", sa.column("customer_id", sa.String), sa.column("tier", sa.String), sa.column("segment", sa.String),
    sa.column("first_seen", _DT),
)  # fmt: skip
customer_scores = sa.table("customer_scores", sa.column("customer_id", sa.String), sa.column("value_tier", sa.String))
status_changes = sa.table(
    "status_changes", sa.column("customer_id", sa.String), sa.column("at", _DT), sa.column("status", sa.String)
)
alerts = sa.table(
    "alerts", sa.column("customer_id", sa.String), sa.column("reason", sa.String), sa.column("rule_id", sa.String),
    sa.column("first_triggered_at", _DT), sa.column("outcome", sa.String), sa.column("control", sa.Boolean),
)  # fmt: skip
ROW = ("customer_id", "measure", "rule", "tier", "segment", "lo", "t", "u", "value")
metric_facts = sa.table(
    "metric_facts", *(sa.column(n, _DT if n in ("lo", "t", "u") else sa.BigInteger if n == "value" else sa.String)
                      for n in ROW),
)  # fmt: skip
TOTAL = ("kind", "key", "measure", "lo_month", "t_month", "u_month", "n")
metric_totals = sa.table("metric_totals", *(sa.column(n) for n in TOTAL))
metric_totals_state = sa.table("metric_totals_state", sa.column("id"), sa.column("lookback_seconds"))


class Fact(NamedTuple):
    customer_id: str
    tier: str | None
    segment: str | None
    first_seen: datetime | None
    status_changes: tuple[tuple[datetime, str], ...]


class AlertFact(NamedTuple):
    reason: str
    first_triggered_at: datetime
    rule_id: str | None
    outcome: str | None
    control: bool


class Contribution(NamedTuple):
    measure: str
    rule: str | None
    lo: datetime | None
    t: datetime | None
    u: datetime | None
    value: int = 0


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _month(at: datetime) -> int:
    at = _utc(at)
    return at.year * 12 + at.month - 1


def _spells(
    changes: Sequence[tuple[datetime, str]],
) -> tuple[list[tuple[datetime, datetime | None]], dict[datetime, str]]:
    effective: dict[datetime, str] = {}
    for at, status in changes:  # at one time the greatest status wins
        effective[at] = max(status, effective.get(at, status))
    spells: list[tuple[datetime, datetime | None]] = []
    begun: datetime | None = None
    for at in sorted(effective):
        if effective[at] == CHURNED and begun is None:
            begun = at
        elif effective[at] != CHURNED and begun is not None:
            spells.append((begun, at))
            begun = None
    if begun is not None:
        spells.append((begun, None))
    return spells, effective


def _churn_bounds(changes: Sequence[tuple[datetime, str]]) -> list[tuple[datetime | None, datetime]]:
    _, effective = _spells(changes)
    times = sorted(effective)
    bounds: list[tuple[datetime | None, datetime]] = []
    previous: datetime | None = None
    for c in sorted({at for at, status in changes if status == CHURNED}):
        if previous is None:
            bounds.append((None, c))
        elif effective[previous] != CHURNED:
            bounds.append((previous, c))
        else:
            after = next((t for t in times if t > previous), None)
            if after is not None and after < c:
                bounds.append((after, c))
        previous = c
    return bounds


def _firsts(measure: str, rule: str | None, times: Any) -> list[Contribution]:
    rows: list[Contribution] = []
    previous: datetime | None = None
    for at in sorted(set(times)):
        rows.append(Contribution(measure, rule, previous, at, at))
        previous = at
    return rows


def _alert_rows(rule: str | None, of_rule: Sequence[AlertFact], lost: dict[int, bool]) -> list[Contribution]:
    rows = _firsts(ALERTED, rule, (a.first_triggered_at for a in of_rule))
    rows += _firsts(LOST, rule, (a.first_triggered_at for a in of_rule if lost[id(a)]))
    rows += _firsts(POSITIVE, rule, (a.first_triggered_at for a in of_rule if lost[id(a)] or a.outcome == SAVED))
    for a in of_rule:
        at = a.first_triggered_at
        rows.append(Contribution(CONTROL if a.control else TREATED, rule, None, at, at))
        if lost[id(a)]:
            rows.append(Contribution(CONTROL_LOST if a.control else TREATED_LOST, rule, None, at, at))
    return rows


def contributions(fact: Fact, of_customer: Sequence[AlertFact], lookback: timedelta) -> list[Contribution]:
    first_seen, changes = fact.first_seen, fact.status_changes
    rows = [Contribution(KNOWN, None, None, None, first_seen)]
    spells, _ = _spells(changes)
    rows += [Contribution(HELD, None, a, b, first_seen) for a, b in spells]
    last_churn = max((at for at, status in changes if status == CHURNED), default=None)
    lost = {
        id(a): a.outcome == CHURNED or (last_churn is not None and last_churn >= a.first_triggered_at)
        for a in of_customer
    }
    rules: dict[str, list[AlertFact]] = {}
    for a in of_customer:
        rules.setdefault(a.rule_id or a.reason, []).append(a)
    for lo, c in _churn_bounds(changes):
        u = c if first_seen is None or first_seen < c else first_seen
        rows.append(Contribution(CHURN, None, lo, c, u))
        for rule, of_rule in ((None, of_customer), *rules.items()):
            warned = [a.first_triggered_at for a in of_rule if c - lookback <= a.first_triggered_at <= c]
            if warned:
                delta = c - min(warned)
                rows.append(Contribution(WARNED, rule, lo, c, u, (delta.days * 86400 + delta.seconds) * 10**6
                                         + delta.microseconds))  # fmt: skip
    rows += _alert_rows(None, of_customer, lost)
    for rule, of_rule in rules.items():
        rows += _alert_rows(rule, of_rule, lost)
    return rows


def _known_ids(conn: sa.Connection, after: str, limit: int) -> list[str]:
    tables = (customers, customer_scores, status_changes, alerts)
    ids = sa.union(*(sa.select(t.c.customer_id.label("customer_id")).where(t.c.customer_id > after) for t in tables))
    known = ids.subquery()
    return list(conn.execute(sa.select(known.c.customer_id).order_by(known.c.customer_id).limit(limit)).scalars())


def _facts(conn: sa.Connection, ids: Sequence[str]) -> Iterator[tuple[Fact, list[AlertFact]]]:
    c, s, sc, a = customers.c, customer_scores.c, status_changes.c, alerts.c
    replicas = {
        r.customer_id: r
        for r in conn.execute(sa.select(c.customer_id, c.tier, c.segment, c.first_seen).where(c.customer_id.in_(ids)))
    }
    scores = dict(conn.execute(sa.select(s.customer_id, s.value_tier).where(s.customer_id.in_(ids))).all())
    changes: dict[str, list[tuple[datetime, str]]] = {}
    for customer_id, at, status in conn.execute(
        sa.select(sc.customer_id, sc.at, sc.status).where(sc.customer_id.in_(ids))
    ):
        changes.setdefault(customer_id, []).append((_utc(at), status))
    found: dict[str, list[AlertFact]] = {}
    query = sa.select(a.customer_id, a.reason, a.first_triggered_at, a.rule_id, a.outcome, a.control)
    for r in conn.execute(query.where(a.customer_id.in_(ids))):
        found.setdefault(r.customer_id, []).append(
            AlertFact(r.reason, _utc(r.first_triggered_at), r.rule_id, r.outcome, bool(r.control))
        )
    for i in ids:
        replica = replicas.get(i)
        yield (
            Fact(
                i,
                (replica.tier if replica else None) or scores.get(i),
                replica.segment if replica else None,
                _utc(replica.first_seen) if replica and replica.first_seen else None,
                tuple(changes.get(i, ())),
            ),
            found.get(i, []),
        )


def backfill(conn: sa.Connection, lookback: timedelta = LOOKBACK, page: int = PAGE) -> None:
    """Every known customer's contribution rows and their monthly totals, built with ``lookback``."""
    conn.execute(metric_totals_state.insert().values(id=1, lookback_seconds=int(lookback.total_seconds())))
    totals: Counter[tuple[Any, ...]] = Counter()
    after = ""
    while ids := _known_ids(conn, after, page):
        rows = []
        for fact, of_customer in _facts(conn, ids):
            tier, segment = fact.tier or UNKNOWN, fact.segment or UNKNOWN
            for x in contributions(fact, of_customer, lookback):
                lo, t, u = x.lo or FAR_PAST, x.t or FAR_FUTURE, x.u or FAR_PAST
                rows.append(
                    dict(zip(ROW, (fact.customer_id, x.measure, x.rule, tier, segment, lo, t, u, x.value), strict=True))
                )
                months = (_month(lo), _month(t), _month(u))
                if x.rule is None:
                    totals.update([("all", "", x.measure, *months), ("tier", tier, x.measure, *months)])
                    totals[("segment", segment, x.measure, *months)] += 1
                else:
                    totals[("rule", x.rule, x.measure, *months)] += 1
        for k in range(0, len(rows), 500):
            conn.execute(metric_facts.insert(), rows[k : k + 500])
        after = ids[-1]
    values = [dict(zip(TOTAL, (*key, n), strict=True)) for key, n in sorted(totals.items()) if n]
    for k in range(0, len(values), 500):
        conn.execute(metric_totals.insert(), values[k : k + 500])
