"""Loyalty typing: behaviour x attitude into the source's types, and the satisfaction trap."""

import pytest

from services.retention.reports.loyalty import Attitude, Behaviour, LoyaltyType, Thresholds, classify

T = Thresholds()  # 3 orders, 180 days, wallet 0.5, decline ratio 0.5, NPS 9, CSAT 4


def buyer(orders: int = 4, tenure: float | None = 400, recent: int = 2, prior: int = 2, wallet: float | None = None):
    return Behaviour(
        orders=orders, tenure_days=tenure, recent_orders=recent, prior_orders=prior, share_of_wallet=wallet
    )


@pytest.mark.parametrize(
    ("behaviour", "attitude", "expected"),
    [
        (buyer(), Attitude(nps=10, csat=None), LoyaltyType.true),
        (buyer(), Attitude(nps=7, csat=5), LoyaltyType.spurious),  # the NPS decides over the CSAT
        (buyer(orders=2), Attitude(nps=9, csat=None), LoyaltyType.latent),  # too few orders
        (buyer(tenure=100), Attitude(nps=None, csat=4), LoyaltyType.latent),  # too new; CSAT 4 is satisfied
        (buyer(wallet=0.3), Attitude(nps=None, csat=3), LoyaltyType.none),  # a small share of wallet
        (buyer(wallet=0.5), Attitude(nps=None, csat=3), LoyaltyType.spurious),  # the threshold counts
        (buyer(recent=1, prior=2), Attitude(nps=9, csat=None), LoyaltyType.latent),  # declining: 1 <= 2 x 0.5
        (buyer(recent=2, prior=3), Attitude(nps=9, csat=None), LoyaltyType.true),  # 2 > 1.5: not declining
        (buyer(orders=0, tenure=None, recent=0, prior=0), Attitude(nps=None, csat=None), LoyaltyType.unmeasured),
    ],
)
def test_types_follow_the_behaviour_attitude_matrix(behaviour: Behaviour, attitude: Attitude, expected: LoyaltyType):
    assert classify(behaviour, attitude, T).type == expected


def test_the_satisfaction_trap_is_a_satisfied_customer_whose_buying_declines():
    trapped = classify(buyer(recent=0, prior=1), Attitude(nps=10, csat=None), T)
    assert (trapped.satisfaction_trap, trapped.declining, trapped.attitude_high) == (True, True, True)
    # Dissatisfied and declining: at risk, but not the trap; satisfied and steady: no trap.
    assert not classify(buyer(recent=0, prior=1), Attitude(nps=5, csat=None), T).satisfaction_trap
    assert not classify(buyer(), Attitude(nps=10, csat=None), T).satisfaction_trap
    # Nothing bought in either window is no decline.
    assert not classify(buyer(recent=0, prior=0), Attitude(nps=10, csat=None), T).declining


def test_repeat_rate_is_repeat_purchases_over_purchases():
    assert classify(buyer(orders=4), Attitude(None, None), T).repeat_rate == 0.75
    assert classify(buyer(orders=0, tenure=None), Attitude(None, None), T).repeat_rate is None


def test_thresholds_are_settings():
    strict = Thresholds(repeat_orders=10, nps_promoter=10)
    assert classify(buyer(), Attitude(nps=9, csat=None), strict).type == LoyaltyType.none
