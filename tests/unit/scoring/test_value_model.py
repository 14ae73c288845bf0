"""BG/NBD and Gamma-Gamma: the published CDNOW estimates, the closed forms and the CLV/tier arithmetic."""

from datetime import date

import numpy as np
import pytest

from services.scoring.value import value_model as vm
from tests.unit.scoring.cdnow import CALIBRATION_END, HOLDOUT_END, cdnow_history, cdnow_rows

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee (2005)
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # Fader, Hardie & Lee (2005), 946 repeat buyers

CDNOW_PARAMS = vm.BgNbdParams(**PUBLISHED_BGNBD)


@pytest.fixture(scope="module")
def cdnow() -> vm.RfmSummary:
    return vm.summarise(cdnow_history(), CALIBRATION_END)


def test_cdnow_summary_matches_the_papers_data(cdnow):
    assert len(cdnow_rows()) == 6919
    assert len(cdnow.customer_ids) == 2357
    assert cdnow.x.sum() == 2457  # repeat transactions in the 39-week calibration period
    assert (cdnow.x > 0).sum() == 946


def test_bgnbd_fit_reproduces_the_published_cdnow_estimates_within_one_percent(cdnow):
    fit = vm.fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T)
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(fit.params, name) == pytest.approx(published, rel=0.01), name
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)  # the paper's LL
    assert fit.n == 2357 and fit.converged


def test_gamma_gamma_fit_reproduces_the_published_cdnow_estimates_within_one_percent(cdnow):
    fit = vm.fit_gamma_gamma(cdnow.x, cdnow.m)
    for name, published in PUBLISHED_GG.items():
        assert getattr(fit.params, name) == pytest.approx(published, rel=0.01), name
    assert fit.n == 946


def test_summary_counts_purchase_days_and_leaves_out_the_first_purchase_from_spend():
    days = {date(2020, 1, 1): 10.0, date(2020, 1, 15): 30.0, date(2020, 1, 29): 50.0, date(2020, 3, 1): 999.0}
    x, t_x, T, m = vm.customer_summary(days, end=date(2020, 2, 12))
    assert (x, t_x, T, m) == (2, 4.0, 6.0, 40.0)
    assert vm.customer_summary(days, end=date(2019, 12, 31)) is None
    assert vm.customer_summary({date(2020, 1, 1): 5.0}, end=date(2020, 1, 8)) == (0, 0.0, 1.0, 0.0)


def test_p_alive_is_one_without_repeat_purchases_and_falls_the_longer_a_repeat_buyer_is_silent():
    assert vm.p_alive(CDNOW_PARAMS, 0, 0, 30)[()] == 1.0
    recent, stale = vm.p_alive(CDNOW_PARAMS, [3, 3], [29, 5], [30, 30])
    assert 0.8 < recent <= 1 and stale < 0.5


def test_conditional_expectation_of_a_brand_new_customer_equals_the_unconditional_one():
    t = np.array([1.0, 10.0, 39.0])
    assert vm.expected_purchases(CDNOW_PARAMS, t, 0, 0, 0) == pytest.approx(vm.expected_purchases_new(CDNOW_PARAMS, t))
    assert vm.expected_purchases(CDNOW_PARAMS, 0.0, 2, 10, 20)[()] == pytest.approx(0.0)
    few, many = vm.expected_purchases(CDNOW_PARAMS, 39, [1, 6], [30, 30], [32, 32])
    assert 0 < few < many


def test_expected_spend_shrinks_a_repeat_buyers_own_mean_towards_the_population_mean():
    gg = vm.GammaGammaParams(**PUBLISHED_GG)
    population = gg.p * gg.gamma / (gg.q - 1)
    assert vm.expected_spend(gg, 0, 0)[()] == pytest.approx(population)
    one, ten = vm.expected_spend(gg, [1, 10], [100.0, 100.0])
    assert population < one < ten < 100.0
    # Fader & Hardie (2013): E[M] = (gamma + m x) p / (p x + q - 1).
    assert one == pytest.approx((gg.gamma + 100.0) * gg.p / (gg.p + gg.q - 1))


def test_clv_is_discounted_expected_purchases_times_spend_times_margin():
    gg = vm.GammaGammaParams(**PUBLISHED_GG)
    args = ([2.0], [20.0], [30.0], [40.0])
    plain = vm.ClvSettings(horizon_months=12, annual_discount_rate=0.0, margin=1.0)
    value, purchases = vm.clv(CDNOW_PARAMS, gg, *args, settings=plain)
    spend = vm.expected_spend(gg, 2.0, 40.0)
    assert purchases[0] == pytest.approx(vm.expected_purchases(CDNOW_PARAMS, 52.0, 2, 20, 30))
    assert value[0] == pytest.approx(purchases[0] * spend)
    discounted, _ = vm.clv(CDNOW_PARAMS, gg, *args, settings=vm.ClvSettings(12, 0.10, 1.0))
    half_margin, _ = vm.clv(CDNOW_PARAMS, gg, *args, settings=vm.ClvSettings(12, 0.10, 0.5))
    assert 0.9 * value[0] < discounted[0] < value[0]
    assert half_margin[0] == pytest.approx(discounted[0] / 2)


def test_tiers_split_the_population_five_fifteen_thirty_fifty_by_value():
    values = np.arange(1, 1001, dtype=float)
    cuts = vm.tier_thresholds(values)
    tiers = [vm.value_tier(v, cuts) for v in values]
    assert [tiers.count(t) for t in vm.TIERS] == [50, 150, 300, 500]
    assert vm.value_tier(0.0, [0.0, 0.0, 0.0]) == "lead"


def test_backtest_on_the_39_week_holdout_tracks_actual_repeat_purchases():
    history = cdnow_history()
    total, rows = vm.backtest(CDNOW_PARAMS, history, CALIBRATION_END, HOLDOUT_END)
    assert total.customers == 2357 and sum(r.customers for r in rows) == 2357
    assert total.actual == sum(r.actual for r in rows) == 1882
    assert total.predicted == pytest.approx(sum(r.predicted for r in rows))
    assert total.predicted == pytest.approx(total.actual, rel=0.15)
    # The conditional expectation rises with calibration frequency, as the actuals do.
    per_customer = [r.predicted / r.customers for r in rows]
    assert per_customer == sorted(per_customer)


def test_a_refit_on_a_simulated_population_converges_to_the_generating_parameters():
    rng = np.random.default_rng(7)
    truth = vm.BgNbdParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
    x, t_x, T = simulate_bgnbd(rng, truth, 20_000, max_age=52.0)
    fit = vm.fit_bgnbd(x, t_x, T)
    assert fit.params.r == pytest.approx(truth.r, rel=0.1)
    assert fit.params.alpha == pytest.approx(truth.alpha, rel=0.15)


def simulate_bgnbd(rng: np.random.Generator, p: vm.BgNbdParams, n: int, *, max_age: float):
    """Customers drawn from the BG/NBD story: Poisson purchases at rate lambda until a dropout coin."""
    lam = rng.gamma(p.r, 1 / p.alpha, n)
    drop = rng.beta(p.a, p.b, n)
    T = rng.uniform(1, max_age, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < drop[i]:
                break
    return x, t_x, T
