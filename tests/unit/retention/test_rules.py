import pytest

from servicekit.events.contracts.common import Severity
from servicekit.events.contracts.customer import CustomerErased
from servicekit.events.contracts.scoring import ScoreValues
from services.retention.rules import (
    ChurnRiskRule,
    ComplaintRule,
    Reason,
    RuleSet,
    evaluate,
    value_at_risk,
    worse,
)
from services.retention.settings import RetentionSettings
from tests.unit.retention.events import T0, complaint, score

RULES = RuleSet(
    churn_risk=(ChurnRiskRule(threshold=0.6),),
    complaints=(ComplaintRule(severities=frozenset({Severity.high, Severity.critical})),),
)


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


def test_the_built_in_rules_follow_the_settings():
    settings = RetentionSettings(risk_threshold=0.9, severe_complaint_severities=["medium", "high", "critical"])
    rules = RuleSet.from_settings(settings)
    assert evaluate(score(churn_risk=0.85).data, rules) == []
    assert len(evaluate(score(churn_risk=0.9).data, rules)) == 1
    assert [t.severity for t in evaluate(complaint(severity="medium").data, rules)] == [Severity.medium]


def test_settings_reject_an_unknown_complaint_severity():
    with pytest.raises(ValueError, match="severe_complaint_severities"):
        RetentionSettings(severe_complaint_severities=["urgent"])


def test_worse_picks_the_more_severe():
    assert worse("medium", "critical") == Severity.critical
    assert worse(Severity.high, "low") == Severity.high
    assert worse("high", "high") == Severity.high
