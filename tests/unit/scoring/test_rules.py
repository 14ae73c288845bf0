"""Churn-risk and health rules against known values (default weights unless a test says otherwise)."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from services.scoring.scores import features as F
from services.scoring.scores import rules
from services.scoring.scores.features import FeatureState
from services.scoring.scores.rules import DEFAULT_WEIGHTS, RuleWeights, churn_risk, health
from services.scoring.settings import ScoringSettings

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ALERT_THRESHOLD = 0.6  # the retention service's default


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def state_with(*, purchases: list[float] = (), complaints: list[tuple[float, str]] = (), amount: float = 100.0):
    state = FeatureState("c-1")
    for i, days in enumerate(purchases):
        F.record_interaction(state, interaction_id=f"p{i}", type="purchase", occurred_at=ago(days), amount=amount)
    for i, (days, severity) in enumerate(complaints):
        F.record_interaction(state, interaction_id=f"k{i}", type="complaint", occurred_at=ago(days), severity=severity)
    return state


def contributions(factors) -> dict[str, float]:
    return {f.code: f.contribution for f in factors}


def test_a_customer_without_signals_sits_at_the_baseline_with_no_factors():
    risk, factors = churn_risk(FeatureState("c-1"), NOW)
    assert risk == pytest.approx(sigmoid(-3.0))  # 0.047
    assert factors == []


def test_one_severe_complaint_alone_stays_below_the_alert_threshold():
    risk, factors = churn_risk(state_with(complaints=[(0, "critical")]), NOW)
    assert risk == pytest.approx(sigmoid(-3.0 + 0.6 + 0.6 + 0.4))  # 0.198
    assert risk < ALERT_THRESHOLD
    assert contributions(factors) == {"complaints_30d": 0.6, "severe_complaints": 0.6, "open_complaints": 0.4}


def test_one_severe_complaint_even_overdue_stays_below_the_alert_threshold():
    state = state_with(complaints=[(3, "critical")])
    F.complaint_overdue(state, complaint_id="k0", severity="critical", at=ago(1))
    risk, _ = churn_risk(state, NOW)
    assert risk == pytest.approx(sigmoid(-3.0 + 0.6 + 0.6 + 0.4 + 0.7))  # 0.332
    assert risk < ALERT_THRESHOLD


def test_three_complaints_and_sixty_days_of_silence_cross_the_alert_threshold():
    state = state_with(purchases=[60], complaints=[(20, "medium"), (10, "medium"), (1, "medium")])
    risk, factors = churn_risk(state, NOW)
    # 3 x 0.6 in 30 days, 3 x 0.4 open, (60 / 30 expected days - 1) x 1.0 recency drop.
    assert risk == pytest.approx(sigmoid(-3.0 + 1.8 + 1.2 + 1.0))  # 0.731
    assert risk > ALERT_THRESHOLD
    assert [(f.code, f.label, f.contribution) for f in factors] == [
        ("complaints_30d", "3 complaints in the last 30 days", 1.8),
        ("open_complaints", "3 complaints still open", 1.2),
        ("recency_drop", "No purchase for 60 days (expected every 30 days)", 1.0),
    ]


def test_the_same_complaints_with_a_fresh_purchase_stay_below_the_threshold():
    state = state_with(purchases=[3], complaints=[(20, "medium"), (10, "medium"), (1, "medium")])
    risk, factors = churn_risk(state, NOW)
    assert risk == pytest.approx(sigmoid(-3.0 + 1.8 + 1.2 - 0.5 * (1 - 3 / 30)))
    assert risk < ALERT_THRESHOLD
    assert contributions(factors)["recent_purchase"] == pytest.approx(-0.45)


def test_recency_is_measured_against_the_customers_own_purchase_rhythm():
    weekly = state_with(purchases=[49, 42, 35, 28, 21])  # every 7 days, silent for 21
    quarterly = state_with(purchases=[201, 111, 21])  # every 90 days, silent for 21
    weekly_factors = contributions(churn_risk(weekly, NOW)[1])
    quarterly_factors = contributions(churn_risk(quarterly, NOW)[1])
    assert weekly_factors["recency_drop"] == pytest.approx(2.0)  # 3 usual gaps: 2 gaps overdue
    assert quarterly_factors["recent_purchase"] == pytest.approx(-0.5 * (1 - 21 / 90), abs=1e-3)
    assert churn_risk(weekly, NOW)[0] > churn_risk(quarterly, NOW)[0]


def test_recency_drop_is_capped():
    _, factors = churn_risk(state_with(purchases=[400, 390]), NOW)  # 38 gaps of 10 days overdue
    assert contributions(factors)["recency_drop"] == 3.0


def test_complaints_count_less_after_30_days_and_not_at_all_after_90():
    state = state_with(complaints=[(100, "low"), (60, "low"), (45, "low"), (5, "low")])
    for cid in ("k0", "k1", "k2", "k3"):
        F.complaint_updated(state, complaint_id=cid, status="resolved", severity="low", changed_at=ago(1))
    factors = churn_risk(state, NOW)[1]
    assert [(f.code, f.label, f.contribution) for f in factors] == [
        ("complaints_30d", "1 complaint in the last 30 days", 0.6),
        ("complaints_90d", "2 earlier complaints in the last 90 days", 0.5),
    ]


def test_complaint_counts_are_capped():
    state = state_with(complaints=[(d, "low") for d in range(10)])
    factors = contributions(churn_risk(state, NOW)[1])
    assert factors["complaints_30d"] == pytest.approx(0.6 * 5)
    assert factors["open_complaints"] == pytest.approx(0.4 * 3)


@pytest.mark.parametrize(
    ("nps", "code", "label", "value"),
    [
        (3, "nps_detractor", "Last NPS 3 (detractor)", round(1.5 * 4 / 7, 3)),
        (0, "nps_detractor", "Last NPS 0 (detractor)", 1.5),
        (10, "nps_promoter", "Last NPS 10 (promoter)", -0.5),
    ],
)
def test_nps_detractors_raise_and_promoters_lower_the_risk(nps, code, label, value):
    state = FeatureState("c-1")
    F.survey_answered(state, interaction_id="s", survey="nps", score=nps, answered_at=ago(1))
    assert [(f.code, f.label, f.contribution) for f in churn_risk(state, NOW)[1]] == [(code, label, value)]


def test_passive_nps_adds_nothing():
    state = FeatureState("c-1")
    F.survey_answered(state, interaction_id="s", survey="nps", score=8, answered_at=ago(1))
    assert churn_risk(state, NOW)[1] == []


@pytest.mark.parametrize(("csat", "value"), [(1, 1.2), (2, 0.6), (5, -0.3)])
def test_low_csat_raises_and_top_csat_lowers_the_risk(csat, value):
    state = FeatureState("c-1")
    F.survey_answered(state, interaction_id="s", survey="csat", score=csat, answered_at=ago(1))
    factors = churn_risk(state, NOW)[1]
    assert [(f.label, f.contribution) for f in factors] == [(f"Last CSAT {csat} of 5", value)]


def test_negative_sentiment_raises_the_risk_in_proportion():
    state = FeatureState("c-1")
    F.record_interaction(state, interaction_id="i", type="chat", occurred_at=ago(1), sentiment=-0.5)
    factors = churn_risk(state, NOW)[1]
    assert [(f.code, f.label, f.contribution) for f in factors] == [
        ("sentiment_negative", "Negative tone in recent contacts (-0.50)", 0.6)
    ]


def test_falling_spend_against_the_previous_90_days_raises_the_risk():
    state = FeatureState("c-1")
    for i, (days, amount) in enumerate([(170, 400.0), (120, 200.0), (20, 150.0), (10, 50.0)]):
        F.record_interaction(state, interaction_id=f"p{i}", type="purchase", occurred_at=ago(days), amount=amount)
    factors = contributions(churn_risk(state, NOW)[1])
    assert factors["spend_drop"] == pytest.approx(1 - 200 / 600, abs=1e-3)
    label = next(f.label for f in churn_risk(state, NOW)[1] if f.code == "spend_drop")
    assert label == "Spend down 67% against the previous 90 days"


def test_a_small_spend_dip_is_not_a_factor():
    state = FeatureState("c-1")
    for i, (days, amount) in enumerate([(120, 100.0), (20, 90.0)]):
        F.record_interaction(state, interaction_id=f"p{i}", type="purchase", occurred_at=ago(days), amount=amount)
    assert "spend_drop" not in contributions(churn_risk(state, NOW)[1])


def test_factors_are_the_top_five_by_absolute_contribution():
    state = state_with(purchases=[120, 90], complaints=[(2, "high"), (1, "low")])
    F.survey_answered(state, interaction_id="s1", survey="nps", score=2, answered_at=ago(1))
    F.survey_answered(state, interaction_id="s2", survey="csat", score=5, answered_at=ago(1))
    F.record_interaction(state, interaction_id="c", type="chat", occurred_at=ago(1), sentiment=-0.2)
    terms = rules.churn_terms(state, NOW)
    risk, factors = churn_risk(state, NOW)
    assert len(terms) == 8 and len(factors) == 5
    magnitudes = [abs(f.contribution) for f in factors]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert min(magnitudes) >= sorted(abs(t.contribution) for t in terms)[-5] - 1e-9
    # The score uses every term, not only the five shown.
    assert risk == pytest.approx(sigmoid(-3.0 + sum(t.contribution for t in terms)))


def test_health_of_a_customer_without_signals_comes_only_from_the_churn_risk():
    risk = sigmoid(-3.0)
    score, factors = health(FeatureState("c-1"), risk, NOW)
    assert score == pytest.approx(50 + 60 * ((1 - risk) - 0.5))  # 77.2
    assert [(f.code, f.label) for f in factors] == [("staying", "Churn risk 5%")]


def test_health_adds_satisfaction_and_engagement_against_a_neutral_midpoint():
    state = FeatureState("c-1")
    F.survey_answered(state, interaction_id="s1", survey="nps", score=10, answered_at=ago(30))
    F.survey_answered(state, interaction_id="s2", survey="csat", score=5, answered_at=ago(30))
    score, factors = health(state, 0.1, NOW)
    # staying 60 x 0.4 = 24; satisfaction 25 x 0.5 = 12.5; engagement after one half-life: 15 x 0 = 0.
    assert score == pytest.approx(50 + 24 + 12.5)
    assert contributions(factors) == {"staying": 24.0, "satisfaction": 12.5}
    assert [f.label for f in factors] == ["Churn risk 10%", "Last NPS 10, CSAT 5 of 5"]


def test_health_stays_within_0_and_100_and_falls_as_risk_rises():
    unhappy = FeatureState("c-1")
    F.survey_answered(unhappy, interaction_id="s", survey="nps", score=0, answered_at=ago(365))
    worst, _ = health(unhappy, 1.0, NOW)
    assert 0 <= worst < health(unhappy, 0.5, NOW)[0] < health(unhappy, 0.0, NOW)[0] <= 100
    assert worst == pytest.approx(50 - 30 - 12.5 - 15 * (0.5 - 0.5 ** (365 / 30)))


def test_weights_are_configurable_as_json_and_tuned_weights_change_the_model_version(monkeypatch):
    monkeypatch.setenv("SCORING_WEIGHTS", '{"complaint_30d": 1.0, "intercept": -2.5}')
    weights = ScoringSettings().weights
    assert (weights.complaint_30d, weights.intercept, weights.open_complaint) == (1.0, -2.5, 0.4)
    assert rules.model_version(DEFAULT_WEIGHTS) == "rules-v1"
    assert rules.model_version(weights).startswith("rules-v1+")
    risk, _ = churn_risk(state_with(complaints=[(0, "low")]), NOW, weights)
    assert risk == pytest.approx(sigmoid(-2.5 + 1.0 + 0.4))


def test_an_unknown_weight_name_is_rejected():
    with pytest.raises(ValueError):
        RuleWeights(complaints_30=1.0)
