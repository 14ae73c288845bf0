"""The lifecycle-stage rule (services.scoring.value.valuation.lifecycle_stage)."""

from datetime import UTC, datetime, timedelta

from services.scoring.scores import features
from services.scoring.value.valuation import DECLINE, EXPLORATION, FORMATION, STABILITY, lifecycle_stage

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def customer(*days_ago: float, amount: float = 50.0) -> features.FeatureState:
    state = features.FeatureState(customer_id="c")
    for i, d in enumerate(sorted(days_ago, reverse=True)):
        features.record_interaction(
            state, interaction_id=f"p{i}", type="purchase", occurred_at=NOW - timedelta(days=d), amount=amount
        )
    return state


def test_no_purchase_or_trial_orders_are_exploration():
    assert lifecycle_stage(features.FeatureState(customer_id="c"), NOW) == EXPLORATION
    assert lifecycle_stage(customer(20, 5), NOW) == EXPLORATION
    assert lifecycle_stage(customer(80, 60, 30, 1), NOW) == EXPLORATION  # under 90 days


def test_growing_activity_is_formation():
    assert lifecycle_stage(customer(200, 120, 60, 30, 10), NOW) == FORMATION


def test_a_long_steady_customer_is_stable():
    monthly_for_two_years = [30 * k + 5 for k in range(24)]
    assert lifecycle_stage(customer(*monthly_for_two_years), NOW) == STABILITY


def test_halved_activity_or_a_long_silence_or_a_low_p_alive_is_decline():
    busy_then_quiet = [190 + 15 * k for k in range(12)] + [40]
    assert lifecycle_stage(customer(*busy_then_quiet), NOW) == DECLINE
    monthly_then_silent = [150 + 30 * k for k in range(10)]
    assert lifecycle_stage(customer(*monthly_then_silent), NOW) == DECLINE
    monthly = [30 * k + 5 for k in range(24)]
    assert lifecycle_stage(customer(*monthly), NOW, p_alive=0.1) == DECLINE


def test_the_same_purchase_twice_counts_once_in_the_purchase_days():
    state = customer(10)
    again = features.record_interaction(
        state, interaction_id="p0", type="purchase", occurred_at=NOW - timedelta(days=10), amount=50.0
    )
    assert again is False and list(state.purchase_days.values()) == [50.0]
