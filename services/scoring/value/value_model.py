"""Customer value: BG/NBD (purchase count, P(alive)) and Gamma-Gamma (spend per purchase). Pure: no I/O.

Why our own maximum-likelihood fit rather than a library: `lifetimes` is unmaintained (last release
2020, breaks on current pandas/numpy), `btyd` is a thin fork with little activity, and PyMC-Marketing
pulls in PyMC/PyTensor (hundreds of MB, compile step) for what is here ~100 lines of numpy/scipy. The
log-likelihoods below are the papers' closed forms, vectorised, and checked against the published
CDNOW estimates in tests/unit/scoring/test_value_model.py.

Conventions (those of the papers): time is in weeks; several purchases on one day are one purchase;
the first purchase is not a repeat. Per customer:
    x    repeat purchase days (purchase days - 1)
    t_x  weeks from the first to the last purchase day (recency)
    T    weeks from the first purchase day to the end of the observation period (age)
    m    mean spend over the repeat purchase days (Gamma-Gamma; only for x > 0)

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", Marketing Science 24(2); Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value
curves for customer base analysis", JMR 42(4), and Fader & Hardie (2013), "The Gamma-Gamma model of
monetary value".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

from contracts.customer import VALUE_TIERS
from services.scoring.value.clv import ClvSettings

WEEKS_PER_MONTH = 52.0 / 12.0
Array = NDArray[np.float64]


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float  # the scale "v" in some texts


@dataclass(frozen=True)
class RfmSummary:
    """Per-customer BG/NBD and Gamma-Gamma inputs, as parallel arrays."""

    customer_ids: list[str]
    x: Array
    t_x: Array
    T: Array
    m: Array  # mean repeat spend; 0 where x == 0


# ---- building the summary -----------------------------------------------------------------------


def customer_summary(purchase_days: dict[date, float], end: date) -> tuple[int, float, float, float] | None:
    """(x, t_x, T, mean repeat spend) of one customer from their per-day spend, observed up to `end`
    (inclusive). None if the customer had no purchase by then."""
    days = sorted(d for d in purchase_days if d <= end)
    if not days:
        return None
    first, last = days[0], days[-1]
    x = len(days) - 1
    m = sum(purchase_days[d] for d in days[1:]) / x if x else 0.0
    return x, (last - first).days / 7.0, (end - first).days / 7.0, m


def summarise(history: dict[str, dict[date, float]], end: date) -> RfmSummary:
    """The population's summary at `end`; customers whose first purchase is after `end` are left out."""
    ids: list[str] = []
    rows: list[tuple[int, float, float, float]] = []
    for customer_id, days in history.items():
        row = customer_summary(days, end)
        if row is not None:
            ids.append(customer_id)
            rows.append(row)
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    return RfmSummary(ids, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])


# ---- BG/NBD ---------------------------------------------------------------------------------------


def bgnbd_log_likelihood(params: Sequence[float] | Array, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """Per-customer log-likelihood (FHL 2005, eq. 6, in the numerically stable log form)."""
    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=float)


def _compress(*columns: Array) -> tuple[list[Array], Array]:
    """Identical rows collapse into one with a weight: CDNOW-like data has many repeated (x, t_x, T)."""
    stacked = np.column_stack(columns)
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float)


def _fit(neg_ll: Callable[[Array], float], n_params: int, initial: Sequence[float] | None) -> tuple[Array, float, bool]:
    """Minimise over log-parameters (keeps them positive); Nelder-Mead polishes an L-BFGS-B start.

    Both stay within e^-10..e^10: degenerate data (e.g. perfectly regular buyers, no dropout) drives
    the MLE to the boundary, and the bounded answer still gives finite, sensible predictions."""
    bounds = [(-10.0, 10.0)] * n_params
    start = np.log(np.asarray(initial, dtype=float)) if initial is not None else np.zeros(n_params)
    first = minimize(neg_ll, start, method="L-BFGS-B", bounds=bounds)
    options = {"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000}
    best = minimize(neg_ll, first.x, method="Nelder-Mead", bounds=bounds, options=options)
    result = best if best.fun <= first.fun else first
    return np.exp(result.x), float(result.fun), bool(result.success or first.success)


@dataclass(frozen=True)
class FitResult:
    params: BgNbdParams | GammaGammaParams
    log_likelihood: float
    n: int
    converged: bool


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, initial: Sequence[float] | None = None, penalizer: float = 0.0
) -> FitResult:
    """Maximum-likelihood BG/NBD parameters (r, alpha, a, b). `penalizer` adds an L2 penalty on the
    parameters (0 = plain MLE, as in the paper)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if x.size == 0:
        raise ValueError("no customers to fit")
    (ux, ut, uT), w = _compress(x, t_x, T)
    scale = 1.0 / w.sum()

    def neg_ll(log_params: Array) -> float:
        params = np.exp(log_params)
        ll = bgnbd_log_likelihood(params, ux, ut, uT)
        value = -(w * ll).sum() * scale + penalizer * float(np.sum(params**2))
        return float(value) if np.isfinite(value) else 1e100

    params, value, ok = _fit(neg_ll, 4, initial or (1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0))
    return FitResult(BgNbdParams(*map(float, params)), -value * w.sum(), int(x.size), ok)


def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """P(still alive | x, t_x, T) (FHL 2005, eq. 11; 1 for a customer with no repeat purchase)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * np.log((alpha + T) / (alpha + t_x))
        odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700)), 0.0)
    return 1.0 / (1.0 + odds)


def expected_purchases(params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
    """E[purchases in the next t weeks | x, t_x, T] (FHL 2005, eq. 10).

    Where the Gauss hypergeometric function is not finite (extreme parameters at the fit's bounds),
    the expectation falls back to P(alive) x the customer's posterior mean rate (r+x)/(alpha+T) x t,
    the limit of the formula when dropout is negligible."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t, x, t_x, T = (np.asarray(v, dtype=float) for v in (t, x, t_x, T))
    with np.errstate(all="ignore"):
        z = t / (alpha + T + t)
        bracket = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1) * bracket
        log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * np.log((alpha + T) / (alpha + t_x))
        odds = np.where(x > 0, np.exp(np.minimum(log_ratio, 700)), 0.0)
        value = first / (1.0 + odds)
        fallback = (r + x) / (alpha + T) * t / (1.0 + odds)
    return np.asarray(np.maximum(np.where(np.isfinite(value), value, fallback), 0.0), dtype=float)


def expected_purchases_new(params: BgNbdParams, t: ArrayLike) -> Array:
    """E[X(t)] for a randomly chosen new customer (FHL 2005, eq. 9)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = np.asarray(t, dtype=float)
    return np.asarray(
        (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t))), dtype=float
    )


# ---- Gamma-Gamma ------------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(params: Sequence[float] | Array, x: ArrayLike, m: ArrayLike) -> Array:
    """Per-customer log-likelihood of mean spend m over x repeat purchases (Fader & Hardie 2013, eq. 4),
    up to the data-only term, which does not move the maximum."""
    p, q, gamma = params
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    return np.asarray(
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(gamma)
        + (p * x - 1) * np.log(m)
        + (p * x) * np.log(x)
        - (p * x + q) * np.log(gamma + m * x),
        dtype=float,
    )


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike, *, initial: Sequence[float] | None = None) -> FitResult:
    """Maximum-likelihood Gamma-Gamma parameters (p, q, gamma) over the repeat buyers (x > 0, m > 0)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size == 0:
        raise ValueError("no repeat buyers to fit")
    (ux, um), w = _compress(x, m)
    scale = 1.0 / w.sum()

    def neg_ll(log_params: Array) -> float:
        value = -(w * gamma_gamma_log_likelihood(np.exp(log_params), ux, um)).sum() * scale
        return float(value) if np.isfinite(value) else 1e100

    params, value, ok = _fit(neg_ll, 3, initial or (1.0, 1.0, max(float(np.mean(m)), 1.0)))
    return FitResult(GammaGammaParams(*map(float, params)), -value * w.sum(), int(x.size), ok)


def expected_spend(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> Array:
    """E[spend per purchase | x, m] (Fader & Hardie 2013, eq. 5): a weighted mean of the population mean
    p*gamma/(q-1) and the customer's own mean m; the population mean for a customer with no repeat."""
    p, q, gamma = params.p, params.q, params.gamma
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    population = p * gamma / (q - 1) if q > 1 else np.nan
    own = (gamma + m * x) * p / (p * x + q - 1)
    return np.where(x > 0, own, population)


# ---- CLV ---------------------------------------------------------------------------------------------


def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m: ArrayLike,
    settings: ClvSettings = ClvSettings(),
) -> tuple[Array, Array]:
    """(CLV, expected purchases over the horizon) per customer, by monthly discounting (see ClvSettings)."""
    x, t_x, T, m = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (x, t_x, T, m))
    months = np.arange(0, settings.horizon_months + 1, dtype=float)
    cumulative = expected_purchases(bgnbd, months[:, None] * WEEKS_PER_MONTH, x, t_x, T)  # (H+1, n)
    per_month = np.diff(cumulative, axis=0)
    discount = (1 + settings.monthly_rate) ** -months[1:]
    spend = expected_spend(gg, x, m)
    # Month by month, in the same order for every customer, so one customer's CLV does not depend on
    # how many are valued with it (a reduction over a one-column array may sum in another order).
    discounted = np.zeros_like(x)
    for month in per_month * discount[:, None]:
        discounted = discounted + month
    value = discounted * spend * settings.margin
    return value, cumulative[-1]


# ---- value tiers ----------------------------------------------------------------------------------

TIERS = VALUE_TIERS


def tier_thresholds(values: ArrayLike, shares: Sequence[float] = (0.05, 0.15, 0.30)) -> list[float]:
    """CLV cut-offs of the customer pyramid: the top shares[0] are platinum, the next shares[1] gold,
    the next shares[2] iron, the rest lead. Returns the minimum CLV of platinum, gold and iron."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return [float("inf")] * len(shares)
    cumulative = np.cumsum(shares)
    return [float(np.quantile(v, 1 - c)) for c in cumulative]


def value_tier(value: float, thresholds: Sequence[float]) -> str:
    """platinum/gold/iron/lead for one CLV against tier_thresholds; zero CLV is always lead."""
    for name, cut in zip(TIERS, thresholds, strict=False):
        if value >= cut and value > 0:
            return name
    return TIERS[-1]


def as_dict(params: BgNbdParams | GammaGammaParams) -> dict[str, float]:
    return asdict(params)


# ---- backtest ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestRow:
    bucket: str  # calibration-period repeat purchases: "0", "1", ..., "7+"
    customers: int
    actual: float  # purchase days in the holdout period, summed over the bucket
    predicted: float


def backtest(
    params: BgNbdParams,
    history: dict[str, dict[date, float]],
    calibration_end: date,
    holdout_end: date,
    *,
    top_bucket: int = 7,
) -> tuple[BacktestRow, list[BacktestRow]]:
    """Predicted (conditional expectation) against actual purchase days after calibration_end up to
    holdout_end, over every customer who had bought by calibration_end: (total, rows by frequency)."""
    summary = summarise(history, calibration_end)
    weeks = (holdout_end - calibration_end).days / 7.0
    predicted = expected_purchases(params, weeks, summary.x, summary.t_x, summary.T)
    actual = np.array(
        [sum(1 for d in history[c] if calibration_end < d <= holdout_end) for c in summary.customer_ids], dtype=float
    )
    buckets = np.minimum(summary.x, top_bucket).astype(int)
    rows = []
    for k in range(top_bucket + 1):
        sel = buckets == k
        label = f"{k}+" if k == top_bucket else str(k)
        rows.append(BacktestRow(label, int(sel.sum()), float(actual[sel].sum()), float(predicted[sel].sum())))
    total = BacktestRow("all", int(summary.x.size), float(actual.sum()), float(predicted.sum()))
    return total, rows
