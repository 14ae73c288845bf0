"""Retention metrics over outcomes: churn, retention and save rates, alert precision and recall, uplift.

Pure: the service loads plain facts (customers with their status changes, alerts with their outcomes)
and these functions do the arithmetic, so every number can be checked by hand in a unit test.

Definitions (period = [start, end)):
- population: customers known before `end` who were not churned at `start`.
- churned: customers of the population whose status became churned within the period.
- churn rate = churned / population; retention rate = 1 - churn rate.
- alerted: customers with an alert first triggered within the period.
- positive: an alerted customer who then churned (after the alert) or whose alert was resolved as saved,
  i.e. who really needed saving. precision = positive / alerted.
- save rate = saved / (saved + churned after the alert), among alerted customers.
- recall = churned customers who had an alert first triggered before they churned (within the
  look-back) / churned. Days of warning = churn time - that alert's first trigger (the earliest).
- uplift: alerts of the period split into treated and control (held back by the playbook's share);
  churn rate of each (the customer churned after the alert), with the counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.types import as_utc

CHURNED = "churned"
SAVED = "saved"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CustomerFact:
    customer_id: str
    tier: str | None = None
    segment: str | None = None
    first_seen: datetime | None = None
    status_changes: tuple[tuple[datetime, str], ...] = ()  # (at, new status), any order


@dataclass(frozen=True, slots=True)
class AlertFact:
    customer_id: str
    reason: str
    first_triggered_at: datetime
    rule_id: str | None = None
    outcome: str | None = None
    control: bool = False


@dataclass(frozen=True, slots=True)
class GroupRates:
    alerts: int
    churned: int
    churn_rate: float | None


@dataclass(frozen=True, slots=True)
class Metrics:
    customers: int
    churned: int
    churn_rate: float | None
    retention_rate: float | None
    alerted_customers: int
    positive_customers: int
    saved_customers: int
    save_rate: float | None
    precision: float | None
    churned_with_warning: int
    recall: float | None
    median_warning_days: float | None
    treated: GroupRates
    control: GroupRates
    uplift: float | None  # control churn rate - treated churn rate: churn prevented per alert
    key: str | None = None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def status_at(changes: Iterable[tuple[datetime, str]], at: datetime) -> str | None:
    """The status in force just before `at` (None: never changed)."""
    before = [(as_utc(t), s) for t, s in changes if as_utc(t) < at]
    return max(before)[1] if before else None


def churned_at(customer: CustomerFact, start: datetime, end: datetime) -> datetime | None:
    """When the customer churned within [start, end), if they did (the first such change)."""
    times = sorted(as_utc(t) for t, s in customer.status_changes if s == CHURNED and start <= as_utc(t) < end)
    return times[0] if times else None


def first_churn_after(customer: CustomerFact, after: datetime) -> datetime | None:
    times = sorted(as_utc(t) for t, s in customer.status_changes if s == CHURNED and as_utc(t) >= after)
    return times[0] if times else None


def compute(
    customers: Sequence[CustomerFact],
    alerts: Sequence[AlertFact],
    *,
    start: datetime,
    end: datetime,
    lookback: timedelta = timedelta(days=180),
    key: str | None = None,
) -> Metrics:
    start, end = as_utc(start), as_utc(end)
    by_id = {c.customer_id: c for c in customers}
    population = [
        c
        for c in customers
        if (c.first_seen is None or as_utc(c.first_seen) < end) and status_at(c.status_changes, start) != CHURNED
    ]
    churn_times = {c.customer_id: t for c in population if (t := churned_at(c, start, end)) is not None}

    # Precision and save rate: customers alerted within the period.
    in_period = [a for a in alerts if start <= as_utc(a.first_triggered_at) < end]
    alerted: dict[str, list[AlertFact]] = {}
    for alert in in_period:
        alerted.setdefault(alert.customer_id, []).append(alert)
    positive = saved = churned_after = 0
    for customer_id, own in alerted.items():
        first = min(as_utc(a.first_triggered_at) for a in own)
        fact = by_id.get(customer_id)
        churned = any(a.outcome == CHURNED for a in own) or (
            fact is not None and first_churn_after(fact, first) is not None
        )
        was_saved = any(a.outcome == SAVED for a in own)
        positive += churned or was_saved
        churned_after += churned
        saved += was_saved and not churned
    # Recall and warning time: churned customers, alerted before they churned.
    warnings: list[float] = []
    for customer_id, at in churn_times.items():
        before = [
            as_utc(a.first_triggered_at)
            for a in alerts
            if a.customer_id == customer_id and at - lookback <= as_utc(a.first_triggered_at) <= at
        ]
        if before:
            warnings.append((at - min(before)).total_seconds() / 86400)
    treated, control = _uplift_groups(in_period, by_id)
    churn_rate = _rate(len(churn_times), len(population))
    return Metrics(
        key=key,
        customers=len(population),
        churned=len(churn_times),
        churn_rate=churn_rate,
        retention_rate=None if churn_rate is None else round(1 - churn_rate, 4),
        alerted_customers=len(alerted),
        positive_customers=positive,
        saved_customers=saved,
        save_rate=_rate(saved, saved + churned_after),
        precision=_rate(positive, len(alerted)),
        churned_with_warning=len(warnings),
        recall=_rate(len(warnings), len(churn_times)),
        median_warning_days=round(statistics.median(warnings), 2) if warnings else None,
        treated=treated,
        control=control,
        uplift=(
            round(control.churn_rate - treated.churn_rate, 4)
            if control.churn_rate is not None and treated.churn_rate is not None
            else None
        ),
    )


def _uplift_groups(alerts: Sequence[AlertFact], by_id: dict[str, CustomerFact]) -> tuple[GroupRates, GroupRates]:
    def churned(alert: AlertFact) -> bool:
        fact = by_id.get(alert.customer_id)
        return alert.outcome == CHURNED or (
            fact is not None and first_churn_after(fact, as_utc(alert.first_triggered_at)) is not None
        )

    groups = []
    for is_control in (False, True):
        members = [a for a in alerts if a.control == is_control]
        lost = sum(churned(a) for a in members)
        groups.append(GroupRates(alerts=len(members), churned=lost, churn_rate=_rate(lost, len(members))))
    return groups[0], groups[1]


def grouped(
    customers: Sequence[CustomerFact],
    alerts: Sequence[AlertFact],
    *,
    group_by: str,
    start: datetime,
    end: datetime,
    lookback: timedelta = timedelta(days=180),
) -> list[Metrics]:
    """Metrics per tier or segment (customers and their alerts), or per rule (every customer, that rule's alerts)."""
    if group_by == "rule":
        keys = sorted({a.rule_id or a.reason for a in alerts})
        return [
            compute(
                customers,
                [a for a in alerts if (a.rule_id or a.reason) == k],
                start=start,
                end=end,
                lookback=lookback,
                key=k,
            )
            for k in keys
        ]
    attribute: Callable[[CustomerFact], str] = (
        (lambda c: c.tier or UNKNOWN) if group_by == "tier" else (lambda c: c.segment or UNKNOWN)
    )
    keys = sorted({attribute(c) for c in customers})
    out = []
    for k in keys:
        members = [c for c in customers if attribute(c) == k]
        ids = {c.customer_id for c in members}
        out.append(
            compute(
                members, [a for a in alerts if a.customer_id in ids], start=start, end=end, lookback=lookback, key=k
            )
        )
    return out
