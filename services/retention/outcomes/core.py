"""Retention metrics over outcomes: churn, retention and save rates, alert precision and recall, uplift.

Pure: the service loads plain facts (customers with their status changes, alerts with their outcomes)
and these functions do the arithmetic, so every number can be checked by hand in a unit test. Every
number is a sum over customers (each with their own alerts), so a Tally takes the customers a page at a
time: the service never holds more than one page of facts (plus one float per warned churn, for the median).
A customer with no alert first triggered and no churn within the period adds only to the population, so
the service counts those in SQL (``add_quiet``) and loads the facts of the others only.

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
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Tally:
    """Running sums of one Metrics over customers added page by page (each with all of their alerts)."""

    start: datetime
    end: datetime
    lookback: timedelta
    population: int = 0
    churned: int = 0
    alerted: int = 0
    positive: int = 0
    saved: int = 0
    churned_after: int = 0
    warnings: list[float] = field(default_factory=list)
    uplift: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])  # [treated, control] x [alerts, lost]

    def add(self, fact: CustomerFact | None, alerts: Sequence[AlertFact]) -> None:
        """One customer (None: alerts of a customer without facts) and every alert of theirs."""
        start, end = self.start, self.end
        churn_time: datetime | None = None
        known = fact is not None and (fact.first_seen is None or as_utc(fact.first_seen) < end)
        if fact is not None and known and status_at(fact.status_changes, start) != CHURNED:
            self.population += 1
            churn_time = churned_at(fact, start, end)
        # Precision and save rate: customers alerted within the period.
        in_period = [a for a in alerts if start <= as_utc(a.first_triggered_at) < end]
        if in_period:
            first = min(as_utc(a.first_triggered_at) for a in in_period)
            churned = any(a.outcome == CHURNED for a in in_period) or (
                fact is not None and first_churn_after(fact, first) is not None
            )
            was_saved = any(a.outcome == SAVED for a in in_period)
            self.alerted += 1
            self.positive += churned or was_saved
            self.churned_after += churned
            self.saved += was_saved and not churned
        # Recall and warning time: churned customers, alerted before they churned.
        if churn_time is not None:
            self.churned += 1
            before = [
                as_utc(a.first_triggered_at)
                for a in alerts
                if churn_time - self.lookback <= as_utc(a.first_triggered_at) <= churn_time
            ]
            if before:
                self.warnings.append((churn_time - min(before)).total_seconds() / 86400)
        # Uplift: the period's alerts, treated or held back as control; lost if the customer churned after.
        for alert in in_period:
            lost = alert.outcome == CHURNED or (
                fact is not None and first_churn_after(fact, as_utc(alert.first_triggered_at)) is not None
            )
            group = self.uplift[int(alert.control)]
            group[0] += 1
            group[1] += lost

    def add_quiet(self, population: int) -> None:
        """Customers with no alert first triggered and no churn within the period: of all the sums, they add
        only to the population (``population`` counts those of them in it)."""
        self.population += population

    def result(self, key: str | None = None) -> Metrics:
        treated, control = (GroupRates(alerts=n, churned=lost, churn_rate=_rate(lost, n)) for n, lost in self.uplift)
        churn_rate = _rate(self.churned, self.population)
        return Metrics(
            key=key,
            customers=self.population,
            churned=self.churned,
            churn_rate=churn_rate,
            retention_rate=None if churn_rate is None else round(1 - churn_rate, 4),
            alerted_customers=self.alerted,
            positive_customers=self.positive,
            saved_customers=self.saved,
            save_rate=_rate(self.saved, self.saved + self.churned_after),
            precision=_rate(self.positive, self.alerted),
            churned_with_warning=len(self.warnings),
            recall=_rate(len(self.warnings), self.churned),
            median_warning_days=round(statistics.median(self.warnings), 2) if self.warnings else None,
            treated=treated,
            control=control,
            uplift=(
                round(control.churn_rate - treated.churn_rate, 4)
                if control.churn_rate is not None and treated.churn_rate is not None
                else None
            ),
        )


def _by_customer(alerts: Iterable[AlertFact]) -> dict[str, list[AlertFact]]:
    grouped_alerts: dict[str, list[AlertFact]] = {}
    for alert in alerts:
        grouped_alerts.setdefault(alert.customer_id, []).append(alert)
    return grouped_alerts


def _add_all(tally: Tally, customers: Sequence[CustomerFact], alerts: Sequence[AlertFact]) -> Tally:
    by_customer = _by_customer(alerts)
    for fact in customers:
        tally.add(fact, by_customer.pop(fact.customer_id, []))
    for orphans in by_customer.values():
        tally.add(None, orphans)
    return tally


def compute(
    customers: Sequence[CustomerFact],
    alerts: Sequence[AlertFact],
    *,
    start: datetime,
    end: datetime,
    lookback: timedelta = timedelta(days=180),
    key: str | None = None,
) -> Metrics:
    tally = Tally(as_utc(start), as_utc(end), lookback)
    return _add_all(tally, customers, alerts).result(key)


def rule_key(alert: AlertFact) -> str:
    return alert.rule_id or alert.reason


def customer_key(group_by: str) -> Callable[[CustomerFact], str]:
    return (lambda c: c.tier or UNKNOWN) if group_by == "tier" else (lambda c: c.segment or UNKNOWN)


class GroupedTally:
    """Tallies per tier or segment (customers and their alerts), or per rule (every customer, that rule's
    alerts; ``rules`` must name every rule key up front, since each rule counts every customer)."""

    def __init__(
        self, group_by: str, start: datetime, end: datetime, lookback: timedelta, rules: Iterable[str] = ()
    ) -> None:
        self.group_by = group_by
        self.args = (as_utc(start), as_utc(end), lookback)
        self.tallies: dict[str, Tally] = {k: Tally(*self.args) for k in rules} if group_by == "rule" else {}

    def add(self, fact: CustomerFact | None, alerts: Sequence[AlertFact]) -> None:
        if self.group_by == "rule":
            for k, tally in self.tallies.items():
                tally.add(fact, [a for a in alerts if rule_key(a) == k])
        elif fact is not None:
            k = customer_key(self.group_by)(fact)
            if k not in self.tallies:
                self.tallies[k] = Tally(*self.args)
            self.tallies[k].add(fact, alerts)

    def add_quiet(self, key: str | None, population: int) -> None:
        """Quiet customers (see Tally.add_quiet) of a tier or segment ``key``; per rule (key None), of every rule."""
        if self.group_by == "rule":
            for tally in self.tallies.values():
                tally.add_quiet(population)
        elif key is not None:
            if key not in self.tallies:
                self.tallies[key] = Tally(*self.args)
            self.tallies[key].add_quiet(population)

    def result(self) -> list[Metrics]:
        return [self.tallies[k].result(k) for k in sorted(self.tallies)]


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
    tally = GroupedTally(group_by, start, end, lookback, rules={rule_key(a) for a in alerts})
    by_customer = _by_customer(alerts)
    for fact in customers:
        tally.add(fact, by_customer.pop(fact.customer_id, []))
    if group_by == "rule":
        for orphans in by_customer.values():
            tally.add(None, orphans)
    return tally.result()
