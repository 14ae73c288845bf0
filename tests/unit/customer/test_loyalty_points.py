"""The pure loyalty rules: ledger arithmetic and the member tier function."""

import pytest

from services.customer.points.loyalty_points import (
    DEFAULT_TIERS,
    BeyondBalance,
    EntryKind,
    Tier,
    apply,
    check_tiers,
    movement,
    tier_for,
)

TIERS = (
    Tier(code="gold", min_lifetime_points=5000, benefits=("priority_support",)),
    Tier(code="member", min_lifetime_points=0),
    Tier(code="silver", min_lifetime_points=1000, benefits=("free_shipping",)),
)


@pytest.mark.parametrize(
    ("lifetime", "code"), [(0, "member"), (999, "member"), (1000, "silver"), (4999, "silver"), (5000, "gold")]
)
def test_the_highest_tier_reached_whatever_the_order_of_the_definitions(lifetime, code):
    tier = tier_for(lifetime, TIERS)
    assert tier is not None and tier.code == code


def test_below_every_threshold_there_is_no_tier():
    assert tier_for(99, [Tier(code="club", min_lifetime_points=100)]) is None
    assert tier_for(5, []) is None


def test_earn_adds_to_balance_and_lifetime_redeem_and_expire_only_to_the_balance():
    assert apply(0, 0, EntryKind.earn, 300) == (300, 300)
    assert apply(300, 300, EntryKind.redeem, 120) == (180, 300)
    assert apply(180, 300, EntryKind.expire, 180) == (0, 300)


def test_adjustments_are_signed_and_correct_the_lifetime_points_never_below_zero():
    assert apply(100, 100, EntryKind.adjust, 50) == (150, 150)
    assert apply(150, 40, EntryKind.adjust, -100) == (50, 0)


@pytest.mark.parametrize(
    ("kind", "amount"), [(EntryKind.redeem, 101), (EntryKind.expire, 101), (EntryKind.adjust, -101)]
)
def test_nothing_takes_the_balance_below_zero(kind, amount):
    with pytest.raises(BeyondBalance):
        apply(100, 500, kind, amount)
    assert apply(100, 500, kind, -100 if kind is EntryKind.adjust else 100)[0] == 0


@pytest.mark.parametrize(("kind", "amount"), [(EntryKind.earn, 0), (EntryKind.redeem, -5), (EntryKind.adjust, 0)])
def test_amounts_with_the_wrong_sign_are_refused(kind, amount):
    with pytest.raises(ValueError, match=r"points must be positive|must not be zero"):
        movement(kind, amount)


def test_tier_definitions_must_be_unique():
    check_tiers(DEFAULT_TIERS)
    with pytest.raises(ValueError, match="codes"):
        check_tiers([Tier(code="a", min_lifetime_points=0), Tier(code="a", min_lifetime_points=1)])
    with pytest.raises(ValueError, match="thresholds"):
        check_tiers([Tier(code="a", min_lifetime_points=0), Tier(code="b", min_lifetime_points=0)])
