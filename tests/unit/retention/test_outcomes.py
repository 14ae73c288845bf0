from datetime import timedelta

import pytest

from services.retention.outcomes.core import AlertFact, CustomerFact, compute, grouped, status_at
from tests.unit.retention.events import T0

START, END = T0, T0 + timedelta(days=30)


def _day(n: float):
    return T0 + timedelta(days=n)


CUSTOMERS = [
    # churned on day 20 after an alert on day 5: warned 15 days ahead
    CustomerFact("a", tier="platinum", segment="smb", status_changes=((_day(20), "churned"),)),
    # churned on day 10 without any alert: missed
    CustomerFact("b", tier="gold", segment="smb", status_changes=((_day(10), "churned"),)),
    # alerted, saved
    CustomerFact("c", tier="gold", segment="enterprise"),
    # alerted, false alarm
    CustomerFact("d", tier="platinum", segment="enterprise"),
    # quiet and loyal
    CustomerFact("e", tier=None, segment="smb"),
    # churned before the period: not in the population
    CustomerFact("f", tier="gold", segment="smb", status_changes=((_day(-5), "churned"),)),
]
ALERTS = [
    AlertFact("a", "severe_complaint", _day(5), rule_id="r1", outcome="churned"),
    AlertFact("c", "high_churn_risk", _day(6), rule_id="r2", outcome="saved"),
    AlertFact("d", "high_churn_risk", _day(7), rule_id="r2", outcome="false_alarm", control=True),
]


def test_status_at_is_the_last_change_before_the_time():
    changes = ((_day(1), "churned"), (_day(3), "won_back"))
    assert status_at(changes, _day(0)) is None
    assert status_at(changes, _day(2)) == "churned"
    assert status_at(changes, _day(4)) == "won_back"


def test_rates_precision_recall_and_warning_time_over_the_period():
    m = compute(CUSTOMERS, ALERTS, start=START, end=END)
    assert (m.customers, m.churned) == (5, 2)
    assert m.churn_rate == 0.4
    assert m.retention_rate == 0.6
    assert m.alerted_customers == 3
    assert m.positive_customers == 2  # a churned, c needed saving; d was a false alarm
    assert m.precision == pytest.approx(0.6667)
    assert m.saved_customers == 1
    assert m.save_rate == 0.5  # 1 saved of 2 decided (a churned)
    assert (m.churned_with_warning, m.recall) == (1, 0.5)  # a was warned, b was not
    assert m.median_warning_days == 15.0


def test_an_alert_after_the_churn_does_not_count_as_warning():
    late = [AlertFact("b", "high_churn_risk", _day(11))]
    assert compute(CUSTOMERS, late, start=START, end=END).recall == 0.0


def test_uplift_compares_churn_of_treated_and_control_alerts_with_counts():
    alerts = [
        AlertFact("a", "r", _day(1), control=False),  # churned later
        AlertFact("c", "r", _day(1), control=False),
        AlertFact("b", "r", _day(1), control=True),  # churned later
        AlertFact("d", "r", _day(1), control=True, outcome="churned"),
    ]
    m = compute(CUSTOMERS, alerts, start=START, end=END)
    assert (m.treated.alerts, m.treated.churned, m.treated.churn_rate) == (2, 1, 0.5)
    assert (m.control.alerts, m.control.churned, m.control.churn_rate) == (2, 2, 1.0)
    assert m.uplift == 0.5


def test_empty_denominators_give_no_rate_rather_than_zero():
    m = compute([], [], start=START, end=END)
    assert (m.churn_rate, m.precision, m.recall, m.save_rate, m.median_warning_days, m.uplift) == (None,) * 6


def test_grouping_by_tier_splits_customers_and_their_alerts():
    groups = {g.key: g for g in grouped(CUSTOMERS, ALERTS, group_by="tier", start=START, end=END)}
    assert set(groups) == {"platinum", "gold", "unknown"}
    assert (groups["platinum"].customers, groups["platinum"].churned, groups["platinum"].alerted_customers) == (2, 1, 2)
    assert (groups["gold"].customers, groups["gold"].churned, groups["gold"].recall) == (2, 1, 0.0)


def test_grouping_by_rule_measures_each_rules_alerts_against_every_churn():
    groups = {g.key: g for g in grouped(CUSTOMERS, ALERTS, group_by="rule", start=START, end=END)}
    assert (groups["r1"].precision, groups["r1"].recall) == (1.0, 0.5)
    assert (groups["r2"].precision, groups["r2"].recall) == (0.5, 0.0)
