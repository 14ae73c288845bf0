"""The campaign statistics: Wilson and Newcombe intervals against published values, the holdout draw,
cost and ROI."""

from __future__ import annotations

import collections

import pytest

from services.retention.campaigns import stats


def test_wilson_interval_matches_the_textbook_values():
    z = stats.z_for(0.95)
    assert z == pytest.approx(1.959964, abs=1e-6)
    half = stats.wilson(5, 10, z)
    assert half is not None and (half.low, half.high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    none = stats.wilson(0, 10, z)
    assert none is not None and none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)
    every = stats.wilson(10, 10, z)
    assert every is not None and every.high == 1.0 and every.low == pytest.approx(0.7225, abs=1e-4)
    assert stats.wilson(0, 0, z) is None
    with pytest.raises(ValueError):
        stats.wilson(11, 10, z)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17, table II, method 10
        ((56, 70, 48, 80), (0.2, 0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.6, 0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.5714, 0.0582, 0.8062)),
        ((5, 56, 0, 29), (0.0893, -0.0381, 0.1926)),
    ],
)
def test_newcombe_interval_matches_the_published_values(counts, expected):
    lift = stats.uplift(*counts)
    assert lift is not None
    assert (lift.difference, lift.low, lift.high) == pytest.approx(expected, abs=1e-4)
    assert lift.method == "newcombe-wilson" and lift.confidence == 0.95


def test_uplift_needs_both_groups_and_a_p_value_needs_variation():
    assert stats.uplift(3, 10, 0, 0) is None
    assert stats.uplift(0, 0, 3, 10) is None
    same = stats.uplift(0, 10, 0, 5)
    assert same is not None and same.difference == 0 and same.p_value is None
    assert -1 <= same.low <= 0 <= same.high <= 1
    lift = stats.uplift(56, 70, 48, 80)
    assert lift is not None and lift.p_value == pytest.approx(0.00805, abs=1e-4)
    wider = stats.uplift(56, 70, 48, 80, confidence=0.99)
    assert wider is not None and wider.low < lift.low and wider.high > lift.high
    with pytest.raises(ValueError):
        stats.z_for(1.0)


def test_holdout_draw_is_stable_and_close_to_the_share():
    groups = [stats.assign_group("campaign-1", f"c{i}", 0.2) for i in range(20_000)]
    assert groups == [stats.assign_group("campaign-1", f"c{i}", 0.2) for i in range(20_000)]
    share = collections.Counter(groups)[stats.HOLDOUT] / len(groups)
    assert 0.18 < share < 0.22
    # another campaign draws independently; no holdout means everyone is treated
    other = [stats.assign_group("campaign-2", f"c{i}", 0.2) for i in range(20_000)]
    assert other != groups
    assert {stats.assign_group("campaign-1", f"c{i}", 0.0) for i in range(100)} == {stats.TREATED}


def test_cost_value_and_roi():
    m = stats.money(
        reached=8,
        redeemed=2,
        cost_per_touch=0.5,
        cost_per_redemption=10.0,
        treated_value=300.0,
        treated_n=10,
        holdout_value=50.0,
        holdout_n=5,
    )
    assert m.cost == 24.0
    assert m.value_won_back == 300.0
    assert m.incremental_value == 200.0  # 300 - 50 / 5 x 10
    assert m.roi == pytest.approx((300 - 24) / 24)
    assert m.incremental_roi == pytest.approx((200 - 24) / 24)
    free = stats.money(
        reached=0,
        redeemed=0,
        cost_per_touch=1.0,
        cost_per_redemption=1.0,
        treated_value=0.0,
        treated_n=3,
        holdout_value=0.0,
        holdout_n=0,
    )
    assert free.cost == 0 and free.roi is None and free.incremental_value is None and free.incremental_roi is None
