"""The value formulas, RFM ranks, pyramid and concentration measures on hand-computed figures."""

import pytest

from services.scoring.value import measures as m
from services.scoring.value.measures import ValueCosts, ValueCounters

COSTS = ValueCosts(per_contact=2.0, per_complaint=10.0, per_return=5.0, margin=0.5, referral_value=20.0)


def test_contribution_is_margin_times_revenue_less_the_cost_to_serve():
    c = ValueCounters(revenue=1000.0, contacts=5, complaints=1, returns=2)
    assert m.cost_to_serve(c, COSTS) == 5 * 2 + 10 + 2 * 5 == 30
    assert m.contribution(c, COSTS) == 500 - 30


def test_a_customer_who_costs_more_than_it_brings_has_a_negative_contribution():
    assert m.contribution(ValueCounters(revenue=10.0, contacts=20), COSTS) == 5 - 40


def test_referral_value_counts_stated_amounts_and_the_unit_value_for_the_others():
    c = ValueCounters(referrals=3, referral_amount=50.0, referrals_with_amount=1)
    assert m.referral_value(c, COSTS) == 50 + 2 * 20


def test_share_of_wallet_and_potential_value_need_a_positive_wallet_estimate():
    assert m.share_of_wallet(ValueCounters(revenue=500.0, wallet_estimate=2000.0)) == 0.25
    assert m.potential_value(ValueCounters(revenue=500.0, wallet_estimate=2000.0)) == 1500
    assert m.potential_value(ValueCounters(revenue=500.0, wallet_estimate=400.0)) == 0
    assert m.share_of_wallet(ValueCounters(revenue=500.0, wallet_estimate=400.0)) == 1.25
    assert m.share_of_wallet(ValueCounters(revenue=500.0)) is None
    assert m.potential_value(ValueCounters(revenue=500.0, wallet_estimate=0.0)) is None


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"wallet_estimate": 1200}, 1200.0),
        ({"wallet_estimate": "1200"}, None),
        ({"wallet_estimate": True}, None),
        ({}, None),
    ],
)
def test_the_wallet_estimate_is_a_numeric_attribute(attributes, expected):
    assert m.wallet_from_attributes(attributes) == expected


def test_quintile_buckets_share_ties_and_run_from_1_to_5():
    # 10 customers: the number with a smaller value decides the bucket.
    assert [m.bucket(smaller, 10) for smaller in (0, 1, 2, 3, 4, 5, 8, 9)] == [1, 1, 2, 2, 3, 3, 5, 5]
    assert m.bucket(0, 1) == 1
    with pytest.raises(ValueError):
        m.bucket(0, 0)


@pytest.mark.parametrize(
    ("rfm", "segment"),
    [
        ((5, 5, 5), "champions"),
        ((4, 4, 4), "champions"),
        ((3, 4, 1), "loyal"),
        ((5, 3, 2), "potential_loyalist"),
        ((4, 1, 2), "new"),
        ((1, 5, 5), "at_risk"),
        ((2, 2, 5), "cant_lose"),
        ((1, 1, 1), "hibernating"),
        ((3, 3, 3), "needs_attention"),
        ((2, 3, 3), "needs_attention"),
    ],
)
def test_rfm_segments(rfm, segment):
    assert m.rfm_segment(*rfm) == segment


def test_tier_for_rank_follows_the_cumulative_tier_shares():
    shares = (0.2, 0.2, 0.2)
    assert [m.tier_for_rank(rank, 5, shares) for rank in range(1, 6)] == ["platinum", "gold", "iron", "lead", "lead"]
    # default shares on 20 customers: 1 platinum, 3 gold, 6 iron, 10 lead
    tiers = [m.tier_for_rank(rank, 20, (0.05, 0.15, 0.30)) for rank in range(1, 21)]
    assert [tiers.count(t) for t in m.TIERS] == [1, 3, 6, 10]


VALUES = [980.0, 450.0, 170.0, 95.0, -30.0]  # -30 counts as 0


def test_top_share_takes_the_first_ceil_n_times_share_customers():
    assert m.top_share(VALUES) == pytest.approx(980 / 1695)
    assert m.top_share(VALUES, 0.3) == pytest.approx((980 + 450) / 1695)  # ceil(1.5) = 2
    assert m.top_share([]) is None and m.top_share([0.0, -1.0]) is None


def test_gini_by_hand():
    # ascending 0, 95, 170, 450, 980: sum(i x) = 7400, sum = 1695, n = 5
    assert m.gini(VALUES) == pytest.approx(2 * 7400 / (5 * 1695) - 6 / 5)
    assert m.gini([5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert m.gini([0.0, 0.0, 0.0, 10.0]) == pytest.approx(3 / 4)


def test_lorenz_points():
    points = [v for point in m.lorenz(VALUES, points=5) for v in point]
    assert points == pytest.approx([0.2, 0.0, 0.4, 95 / 1695, 0.6, 265 / 1695, 0.8, 715 / 1695, 1.0, 1.0])
    # fewer customers than points: empty buckets carry the previous point forward
    few = [v for point in m.lorenz([1.0, 3.0], points=4) for v in point]
    assert few == pytest.approx([0.0, 0.0, 0.5, 0.25, 0.5, 0.25, 1.0, 1.0])
