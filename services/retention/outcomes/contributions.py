"""Each customer's share of every retention metric, as rows that the monthly totals add up (pure).

A metric over a period [s, e) counts rows whose three times satisfy ``lo < s <= t`` and ``u < e``
(None: lo and u minus infinity, t plus infinity). For every customer, outcomes/core.py's Tally adds
exactly the rows of ``contributions`` that satisfy those conditions, whatever s and e are:

- known (None, None, F): the customer is known before e (F: first seen; None when never seen).
- held (a, b, F): status churned for s in (a, b] (a churned spell): population = known - held.
- churned (L, c, max(c, F)): c is a churn time; counted when it is the first churn within the period
  and the customer was not churned at its start (L: the latest time s may not reach).
- warned: the same as churned, when an alert was first triggered within the look-back before c; value:
  the warning in microseconds (the median is read from these rows, not summed).
- alerted / lost / positive (p, t, t): the first alert of the kind within the period (p: the previous
  such alert). lost: the alert's outcome is churned or the customer churned at or after it; positive:
  lost or saved. saved customers = positive - lost.
- treated / control, treated_lost / control_lost (None, t, t): each alert of the period (uplift).

Rows with ``rule`` None count for the whole population and per tier and segment; rows with a rule count
for that rule (its own alerts). Uplift rows come in both forms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.types import as_utc
from services.retention.outcomes.core import CHURNED, SAVED, UNKNOWN, AlertFact, CustomerFact, Metrics, Tally, rule_key

KNOWN, HELD, CHURN, WARNED = "known", "held", "churned", "warned"
ALERTED, LOST, POSITIVE = "alerted", "lost", "positive"
TREATED, CONTROL, TREATED_LOST, CONTROL_LOST = "treated", "control", "treated_lost", "control_lost"
# A rule's metrics count every customer: these it takes from the rows of no rule.
CUSTOMER_MEASURES = (KNOWN, HELD, CHURN)
MEASURES = (KNOWN, HELD, CHURN, WARNED, ALERTED, LOST, POSITIVE, TREATED, CONTROL, TREATED_LOST, CONTROL_LOST)


@dataclass(frozen=True, slots=True, order=True)
class Contribution:
    measure: str
    rule: str | None
    lo: datetime | None  # counted when lo < start (None: always)
    t: datetime | None  # counted when start <= t (None: always)
    u: datetime | None  # counted when u < end (None: always)
    value: int = 0  # warned: microseconds of warning


def counts(row: Contribution, start: datetime, end: datetime) -> bool:
    """Whether the row counts for the period [start, end)."""
    return (row.lo is None or row.lo < start) and (row.t is None or start <= row.t) and (row.u is None or row.u < end)


def tier_key(fact: CustomerFact) -> str:
    return fact.tier or UNKNOWN


def segment_key(fact: CustomerFact) -> str:
    return fact.segment or UNKNOWN


def _later(a: datetime, b: datetime | None) -> datetime:
    return a if b is None or b < a else b


def _spells(
    changes: Sequence[tuple[datetime, str]],
) -> tuple[list[tuple[datetime, datetime | None]], dict[datetime, str]]:
    """Churned spells (a, b] of the status in force, and the status in force after each change time."""
    effective: dict[datetime, str] = {}
    for at, status in changes:  # at one time the greatest status wins, as core.status_at orders them
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
    """(L, c) per churn time c: counted for start in (L, c] (L None: any start up to c)."""
    _, effective = _spells(changes)
    times = sorted(effective)
    churns = sorted({at for at, status in changes if status == CHURNED})
    bounds: list[tuple[datetime | None, datetime]] = []
    previous: datetime | None = None
    for c in churns:
        if previous is None:
            bounds.append((None, c))
        elif effective[previous] != CHURNED:
            bounds.append((previous, c))
        else:  # churned from the previous churn until the next change, if one comes before c
            after = next((t for t in times if t > previous), None)
            if after is not None and after < c:
                bounds.append((after, c))
        previous = c
    return bounds


def _firsts(measure: str, rule: str | None, times: Iterable[datetime]) -> list[Contribution]:
    """The first of the times within a period: each distinct time, with the one before it as lo."""
    rows: list[Contribution] = []
    previous: datetime | None = None
    for at in sorted(set(times)):
        rows.append(Contribution(measure, rule, previous, at, at))
        previous = at
    return rows


def _alert_rows(rule: str | None, alerts: Sequence[AlertFact], lost: dict[int, bool]) -> list[Contribution]:
    rows = _firsts(ALERTED, rule, (a.first_triggered_at for a in alerts))
    rows += _firsts(LOST, rule, (a.first_triggered_at for a in alerts if lost[id(a)]))
    rows += _firsts(POSITIVE, rule, (a.first_triggered_at for a in alerts if lost[id(a)] or a.outcome == SAVED))
    return rows


def _uplift_rows(rule: str | None, alerts: Sequence[AlertFact], lost: dict[int, bool]) -> list[Contribution]:
    rows = []
    for a in alerts:
        at = a.first_triggered_at
        rows.append(Contribution(CONTROL if a.control else TREATED, rule, None, at, at))
        if lost[id(a)]:
            rows.append(Contribution(CONTROL_LOST if a.control else TREATED_LOST, rule, None, at, at))
    return rows


def contributions(fact: CustomerFact, alerts: Sequence[AlertFact], lookback: timedelta) -> list[Contribution]:
    """Every row of the customer's share of the metrics (``alerts``: all of theirs), sorted."""
    first_seen = as_utc(fact.first_seen) if fact.first_seen is not None else None
    changes = [(as_utc(at), status) for at, status in fact.status_changes]
    alerts = [
        AlertFact(a.customer_id, a.reason, as_utc(a.first_triggered_at), a.rule_id, a.outcome, a.control)
        for a in alerts
    ]
    rows = [Contribution(KNOWN, None, None, None, first_seen)]
    spells, _ = _spells(changes)
    rows += [Contribution(HELD, None, a, b, first_seen) for a, b in spells]
    last_churn = max((at for at, status in changes if status == CHURNED), default=None)
    lost = {
        id(a): a.outcome == CHURNED or (last_churn is not None and last_churn >= a.first_triggered_at) for a in alerts
    }
    rules: dict[str, list[AlertFact]] = {}
    for a in alerts:
        rules.setdefault(rule_key(a), []).append(a)
    for lo, c in _churn_bounds(changes):
        u = _later(c, first_seen)
        rows.append(Contribution(CHURN, None, lo, c, u))
        for rule, of_rule in ((None, alerts), *rules.items()):
            warned = [a.first_triggered_at for a in of_rule if c - lookback <= a.first_triggered_at <= c]
            if warned:
                rows.append(Contribution(WARNED, rule, lo, c, u, _microseconds(c - min(warned))))
    rows += _alert_rows(None, alerts, lost) + _uplift_rows(None, alerts, lost)
    for rule, of_rule in rules.items():
        rows += _alert_rows(rule, of_rule, lost) + _uplift_rows(rule, of_rule, lost)
    return sorted(rows, key=_order)


def _order(row: Contribution) -> tuple[object, ...]:
    none_first = (row.lo is not None, row.lo, row.t is not None, row.t, row.u is not None, row.u)
    return (row.measure, row.rule or "", *none_first, row.value)


def _microseconds(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def warning_days(microseconds: int) -> float:
    """As core.Tally computes it: timedelta.total_seconds() / 86400."""
    return (microseconds / 10**6) / 86400


def metrics_of(
    counted: Mapping[str, int], warnings: Sequence[float], start: datetime, end: datetime, key: str | None = None
) -> Metrics:
    """The metrics from the period's count of rows per measure and the warned churns' warnings in days."""
    tally = Tally(start, end, timedelta(0))
    tally.population = counted.get(KNOWN, 0) - counted.get(HELD, 0)
    tally.churned = counted.get(CHURN, 0)
    tally.alerted = counted.get(ALERTED, 0)
    tally.positive = counted.get(POSITIVE, 0)
    tally.churned_after = counted.get(LOST, 0)
    tally.saved = tally.positive - tally.churned_after
    tally.warnings = list(warnings)
    tally.uplift = [
        [counted.get(TREATED, 0), counted.get(TREATED_LOST, 0)],
        [counted.get(CONTROL, 0), counted.get(CONTROL_LOST, 0)],
    ]
    return tally.result(key)
