import random
from datetime import timedelta

import pytest

from contracts.common import Severity
from contracts.customer import CustomerErased
from contracts.scoring import ScoreValues
from services.retention.defaults import DEFAULT_RULES
from services.retention.rules.core import (
    Context,
    Reason,
    Rule,
    RuleKind,
    RuleParams,
    ScorePoint,
    evaluate,
    needs_history,
    validate,
    value_at_risk,
    worse,
)
from services.retention.rules.preview import Signal, preview
from tests.unit.retention.events import T0, complaint, overdue, score, survey

CHURN = Rule(RuleKind.churn_risk_above, Severity.medium, params=RuleParams(threshold=0.6, high_at=0.8), id="r-churn")
SEVERE = Rule(RuleKind.severe_complaint, Severity.high, params=RuleParams(severities=frozenset({"high", "critical"})))
RULES = (CHURN, SEVERE)


def _rule(kind: RuleKind, severity: Severity = Severity.medium, **params) -> Rule:
    return Rule(kind, severity, params=RuleParams(**params))


def test_churn_risk_below_the_threshold_raises_nothing():
    assert evaluate(score(churn_risk=0.59).data, RULES) == []


@pytest.mark.parametrize(
    ("risk", "severity"), [(0.6, Severity.medium), (0.79, Severity.medium), (0.8, Severity.high), (0.97, Severity.high)]
)
def test_churn_risk_at_or_above_the_threshold_raises_high_churn_risk_graded_by_risk(risk: float, severity: Severity):
    [trigger] = evaluate(score(churn_risk=risk).data, RULES)
    assert trigger.reason == Reason.high_churn_risk
    assert trigger.severity == severity
    assert trigger.churn_risk == risk
    assert trigger.rule_id == "r-churn"


def test_a_churn_trigger_carries_the_scores_factors_its_value_at_risk_and_time():
    [trigger] = evaluate(score(churn_risk=0.75, clv=2000.0, minutes=5).data, RULES)
    assert [f.code for f in trigger.factors] == ["recency_drop"]
    assert trigger.value_at_risk == 1500.0
    assert trigger.observed_at == T0.replace(minute=5)


def test_value_at_risk_is_unknown_without_clv_and_never_negative():
    assert value_at_risk(ScoreValues(churn_risk=0.9, health=10, clv=None)) is None
    assert value_at_risk(ScoreValues(churn_risk=0.9, health=10, clv=-50.0)) == 0.0
    assert value_at_risk(ScoreValues(churn_risk=0.5, health=50, clv=301.0)) == 150.5


@pytest.mark.parametrize("severity", ["high", "critical"])
def test_a_severe_complaint_raises_severe_complaint_with_the_complaints_severity(severity: str):
    [trigger] = evaluate(complaint(severity=severity, minutes=3).data, RULES)
    assert trigger.reason == Reason.severe_complaint
    assert trigger.severity == severity
    assert trigger.observed_at == T0.replace(minute=3)
    assert trigger.churn_risk is None
    [factor] = trigger.factors
    assert factor.code == f"complaint_{severity}"
    assert "delivery" in factor.label


@pytest.mark.parametrize("severity", ["low", "medium"])
def test_a_mild_complaint_raises_nothing(severity: str):
    assert evaluate(complaint(severity=severity).data, RULES) == []


def test_events_no_rule_watches_raise_nothing():
    assert evaluate(CustomerErased(customer_id="c-1", erased_at=T0), RULES) == []


def test_a_custom_reason_code_replaces_the_kinds_default():
    rule = Rule(RuleKind.churn_risk_above, Severity.low, reason="watch_list", params=RuleParams(threshold=0.1))
    assert [t.reason for t in evaluate(score(churn_risk=0.2).data, [rule])] == ["watch_list"]


def test_risk_jump_fires_when_risk_rose_by_delta_within_the_window():
    rule = _rule(RuleKind.risk_jump, delta=0.2, within_days=7)
    history = (ScorePoint(T0, 0.3), ScorePoint(T0 - timedelta(days=10), 0.05))  # the old low is outside the window
    [trigger] = evaluate(score(churn_risk=0.55, days=3).data, [rule], Context(history=history))
    assert trigger.reason == Reason.risk_jump
    assert trigger.factors[0].code == "risk_jump"
    assert trigger.factors[0].contribution == pytest.approx(0.25)
    assert evaluate(score(churn_risk=0.45, days=3).data, [rule], Context(history=history)) == []
    assert evaluate(score(churn_risk=0.55, days=8).data, [rule], Context(history=history)) == []


def test_risk_jump_also_uses_the_events_previous_value_and_needs_some_history():
    rule = _rule(RuleKind.risk_jump, delta=0.2, within_days=7)
    assert evaluate(score(churn_risk=0.9).data, [rule]) == []
    previous = ScoreValues(churn_risk=0.1, health=90)
    assert len(evaluate(score(churn_risk=0.35, previous=previous).data, [rule])) == 1


def test_p_alive_below_watches_only_the_named_tiers():
    rule = _rule(RuleKind.p_alive_below, Severity.high, threshold=0.3, tiers=frozenset({"platinum", "gold"}))
    [trigger] = evaluate(score(churn_risk=0.2, p_alive=0.1, tier="gold").data, [rule])
    assert (trigger.reason, trigger.severity) == (Reason.key_customer_fading, Severity.high)
    assert evaluate(score(churn_risk=0.2, p_alive=0.1, tier="iron").data, [rule]) == []
    assert evaluate(score(churn_risk=0.2, p_alive=0.5, tier="gold").data, [rule]) == []
    assert evaluate(score(churn_risk=0.2, p_alive=None, tier="gold").data, [rule]) == []
    # An account-managed tier in the context overrides the score's own.
    assert len(evaluate(score(churn_risk=0.2, p_alive=0.1, tier="iron").data, [rule], Context(tier="platinum"))) == 1


def test_a_tier_filter_on_a_complaint_rule_uses_the_customers_tier_from_the_context():
    rule = Rule(
        RuleKind.severe_complaint,
        Severity.critical,
        reason="key_account_complaint",
        params=RuleParams(severities=frozenset({"high"}), tiers=frozenset({"platinum"})),
    )
    assert evaluate(complaint(severity="high").data, [rule]) == []
    [trigger] = evaluate(complaint(severity="high").data, [rule], Context(tier="platinum"))
    assert trigger.severity == Severity.critical  # the rule's severity is a floor


def test_complaint_overdue_fires_for_any_or_the_listed_severities():
    assert len(evaluate(overdue(severity="low").data, [_rule(RuleKind.complaint_overdue)])) == 1
    only_high = _rule(RuleKind.complaint_overdue, severities=frozenset({Severity.high}))
    assert evaluate(overdue(severity="low").data, [only_high]) == []
    [trigger] = evaluate(overdue(severity="high").data, [only_high])
    assert trigger.reason == Reason.complaint_overdue


@pytest.mark.parametrize(
    ("kind", "value", "fires"),
    [("nps", 6, True), ("nps", 7, False), ("csat", 2, True), ("csat", 3, False), ("ces", 1, False)],
)
def test_low_survey_fires_at_or_below_the_nps_or_csat_limit(kind: str, value: int, fires: bool):
    rule = _rule(RuleKind.low_survey, nps_max=6, csat_max=2)
    triggers = evaluate(survey(kind=kind, value=value).data, [rule])
    assert [t.reason for t in triggers] == ([Reason.low_satisfaction] if fires else [])


def test_lifecycle_decline_fires_on_the_move_into_decline_only():
    rule = _rule(RuleKind.lifecycle_decline)
    stable = ScoreValues(churn_risk=0.2, health=80, lifecycle_stage="stability")
    declining = ScoreValues(churn_risk=0.3, health=70, lifecycle_stage="decline")
    assert len(evaluate(score(stage="decline", previous=stable).data, [rule])) == 1
    assert evaluate(score(stage="decline", previous=declining).data, [rule]) == []
    assert evaluate(score(stage="stability", previous=stable).data, [rule]) == []
    # Without a previous value on the event, the stored history says where it came from.
    history = (ScorePoint(T0 - timedelta(days=1), 0.3, "decline"),)
    assert evaluate(score(stage="decline").data, [rule], Context(history=history)) == []


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (Rule(RuleKind.churn_risk_above, Severity.low), "params.threshold"),
        (_rule(RuleKind.churn_risk_above, threshold=0.7, high_at=0.5), "params.high_at"),
        (_rule(RuleKind.risk_jump, delta=0.2), "params.within_days"),
        (_rule(RuleKind.p_alive_below, threshold=0.3), "params.tiers"),
        (_rule(RuleKind.p_alive_below, threshold=0.3, tiers=frozenset({"diamond"})), "params.tiers"),
        (_rule(RuleKind.severe_complaint), "params.severities"),
        (_rule(RuleKind.low_survey), "params.nps_max"),
    ],
)
def test_validation_names_the_missing_or_bad_parameter(rule: Rule, field: str):
    assert field in {f for f, _ in validate(rule.kind, rule.params)}


def test_the_default_rules_are_valid():
    from services.retention.catalog.service import params_of

    for row in DEFAULT_RULES:
        assert validate(RuleKind(row["kind"]), params_of(row["params"])) == [], row["id"]


def test_worse_picks_the_more_severe():
    assert worse("medium", "critical") == Severity.critical
    assert worse(Severity.high, "low") == Severity.high
    assert worse("high", "high") == Severity.high


# ---- preview -------------------------------------------------------------------------------------


def _signal(event) -> Signal:
    data = event.data
    at = getattr(data, "computed_at", None) or getattr(data, "opened_at", None)
    return Signal(data.customer_id, at, data)


def test_preview_counts_one_alert_per_customer_with_the_first_trigger_time():
    signals = [
        _signal(score("a", 0.7, days=1)),
        _signal(score("a", 0.9, days=2)),  # same customer: one alert, two triggers
        _signal(score("b", 0.5, days=1)),  # below the threshold
        _signal(score("c", 0.65, days=3)),
    ]
    result = preview(CHURN, signals, start=T0, end=T0 + timedelta(days=10))
    assert (result.alerts, result.triggers) == (2, 3)
    assert [(h.customer_id, h.first_triggered_at, h.triggers) for h in result.customers] == [
        ("a", T0 + timedelta(days=1), 2),
        ("c", T0 + timedelta(days=3), 1),
    ]
    assert result.customers[0].severity == Severity.high  # escalated by the 0.9 score


def test_preview_only_counts_the_period_but_uses_earlier_scores_as_history():
    rule = _rule(RuleKind.risk_jump, delta=0.3, within_days=7)
    signals = [
        _signal(score("a", 0.1, days=-2)),  # before the period: history only
        _signal(score("a", 0.5, days=1)),  # +0.4 within 3 days: fires
        _signal(score("b", 0.9, days=-1)),  # a trigger before the period is not counted
        _signal(score("c", 0.1, days=2)),
        _signal(score("c", 0.9, days=20)),  # after the period
    ]
    result = preview(rule, signals, start=T0, end=T0 + timedelta(days=10))
    assert [h.customer_id for h in result.customers] == ["a"]


def test_preview_of_a_tier_rule_takes_tiers_from_the_given_map():
    rule = Rule(
        RuleKind.severe_complaint,
        Severity.high,
        params=RuleParams(severities=frozenset({"high"}), tiers=frozenset({"platinum"})),
    )
    signals = [_signal(complaint("a", "high")), _signal(complaint("b", "high"))]
    result = preview(rule, signals, start=T0, end=T0 + timedelta(days=1), tiers={"b": "platinum"})
    assert [h.customer_id for h in result.customers] == ["b"]


def test_scores_that_skip_the_history_get_the_same_triggers_as_with_any_history():
    """needs_history() lets retention skip reading earlier scores; where it says so, no history changes the verdict."""
    rules = [Rule(**{k: v for k, v in r.items() if k in ("id", "name", "reason")}, kind=RuleKind(r["kind"]),
                  severity=Severity(r["severity"]), params=RuleParams(**{k: (frozenset(v) if isinstance(v, list) else v)
                  for k, v in r["params"].items()})) for r in DEFAULT_RULES]  # fmt: skip
    rng = random.Random(1)
    stages = [None, "active", "at_risk", "decline"]
    skipped = 0
    for n in range(2000):
        before = ScoreValues(churn_risk=rng.random(), health=50, lifecycle_stage=rng.choice(stages))
        event = score(
            churn_risk=rng.random(), minutes=n, stage=rng.choice(stages), previous=rng.choice([None, before])
        ).data
        history = tuple(
            ScorePoint(event.computed_at - timedelta(hours=rng.uniform(0.1, 300)), rng.random(), rng.choice(stages))
            for _ in range(rng.randint(1, 4))
        )
        if not needs_history(event, rules):
            skipped += 1
            assert evaluate(event, rules, Context(history=history)) == evaluate(event, rules, Context())
    assert 0 < skipped < 2000  # both branches were exercised
