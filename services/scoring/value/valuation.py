"""Per-customer value and lifecycle stage from the feature state. Pure: no I/O, no clock.

The population parameters come from the active value-model version (a refit job fits them); here they
are only evaluated in closed form, which is cheap enough for every event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

import numpy as np

from services.scoring.scores.features import FeatureState, days_between
from services.scoring.value import value_model as vm
from services.scoring.value.clv import ClvSettings

EXPLORATION, FORMATION, STABILITY, DECLINE = "exploration", "formation", "stability", "decline"


@dataclass(frozen=True)
class ValueModel:
    """One fitted value-model version, as the scorer uses it."""

    id: str
    bgnbd: vm.BgNbdParams
    gamma_gamma: vm.GammaGammaParams
    clv: ClvSettings
    thresholds: tuple[float, float, float]  # minimum CLV of platinum, gold, iron

    def params_json(self) -> dict[str, Any]:
        return {
            "bgnbd": vm.as_dict(self.bgnbd),
            "gamma_gamma": vm.as_dict(self.gamma_gamma),
            "clv": {
                "horizon_months": self.clv.horizon_months,
                "annual_discount_rate": self.clv.annual_discount_rate,
                "margin": self.clv.margin,
            },
            "tier_thresholds": list(self.thresholds),
        }

    @classmethod
    def from_params(cls, id: str, params: dict[str, Any]) -> ValueModel:
        return cls(
            id=id,
            bgnbd=vm.BgNbdParams(**params["bgnbd"]),
            gamma_gamma=vm.GammaGammaParams(**params["gamma_gamma"]),
            clv=ClvSettings(**params["clv"]),
            thresholds=cast(tuple[float, float, float], tuple(params["tier_thresholds"])),
        )


@dataclass(frozen=True)
class CustomerValue:
    p_alive: float
    expected_purchases: float  # over the CLV horizon
    expected_spend: float  # per purchase
    clv: float
    tier: str


def purchase_history(state: FeatureState) -> dict[date, float]:
    return {date.fromisoformat(day): amount for day, amount in state.purchase_days.items()}


def customer_values(items: Sequence[tuple[FeatureState, datetime]], model: ValueModel) -> list[CustomerValue | None]:
    """P(alive), expected purchases and CLV of many customers, each at its own `as_of` (None before the
    first purchase): the closed forms are evaluated once over the batch's arrays, not once per customer."""
    out: list[CustomerValue | None] = [None] * len(items)
    summaries = [vm.customer_summary(purchase_history(state), as_of.date()) for state, as_of in items]
    known = [i for i, summary in enumerate(summaries) if summary is not None]
    if not known:
        return out
    table = np.array([summaries[i] for i in known], dtype=float)
    x, t_x, T, m = (np.ascontiguousarray(table[:, k]) for k in range(4))
    clv, purchases = vm.clv(model.bgnbd, model.gamma_gamma, x, t_x, T, m, model.clv)
    p_alive = vm.p_alive(model.bgnbd, x, t_x, T)
    spend = vm.expected_spend(model.gamma_gamma, x, m)
    for k, i in enumerate(known):
        value = float(clv[k])
        tier = vm.value_tier(value, model.thresholds)
        out[i] = CustomerValue(float(p_alive[k]), float(purchases[k]), float(spend[k]), value, tier)
    return out


def customer_value(state: FeatureState, as_of: datetime, model: ValueModel) -> CustomerValue | None:
    """P(alive), expected purchases and CLV at `as_of` (None before the first purchase)."""
    return customer_values([(state, as_of)], model)[0]


# ---- lifecycle stage --------------------------------------------------------------------------------

HALF_YEAR = timedelta(days=182)
EXPLORATION_DAYS = 90  # tenure under this: still trying us out
STABILITY_DAYS = 365  # tenure from which a steady customer counts as stable
STABILITY_MIN_PURCHASE_DAYS = 4  # purchase days in the last year needed for stability
FALLING = 0.5  # the last half-year at or below this share of the one before is a decline
HOLDING = 0.8  # ... at or above this share it holds (stability); between, or rising, is formation
SILENT_GAPS = 3.0  # silent for this many usual purchase gaps (at least SILENT_MIN_DAYS) is a decline
SILENT_MIN_DAYS = 90
P_ALIVE_DECLINE = 0.3


def lifecycle_stage(state: FeatureState, as_of: datetime, p_alive: float | None = None) -> str:
    """Lifecycle stage from tenure and the trend of activity and spend.

    Rule, applied in order, with tenure = days since the first purchase, and "activity" and "spend" =
    purchase days and spend in the last 182 days against the 182 days before:

    1. No purchase yet: **exploration**.
    2. **decline** if the customer has bought for at least 182 days and any of: activity or spend in the
       last half-year fell to half (or less) of the half-year before; no purchase for 3 of their usual
       purchase gaps (and at least 90 days); P(alive) from the value model below 0.3.
    3. **exploration** if tenure is under 90 days or there are at most 2 purchase days (trial orders).
    4. **stability** if tenure is at least 365 days, there were at least 4 purchase days in the last
       year, and activity in the last half-year held at 80% or more of the half-year before.
    5. Otherwise **formation** (the relationship is growing: transactions increase or are still
       establishing their rhythm).
    """
    history = purchase_history(state)
    if not history:
        return EXPLORATION
    today = as_of.date()
    first = min(history)
    tenure = (today - first).days
    recent_start, prior_start = today - HALF_YEAR, today - 2 * HALF_YEAR
    recent = [d for d in history if recent_start < d <= today]
    prior = [d for d in history if prior_start < d <= recent_start]
    recent_spend, prior_spend = sum(history[d] for d in recent), sum(history[d] for d in prior)

    if tenure >= HALF_YEAR.days:
        falling_activity = bool(prior) and len(recent) <= FALLING * len(prior)
        falling_spend = prior_spend > 0 and recent_spend <= FALLING * prior_spend
        since = days_between(state.last_purchase_at, as_of)
        gap = state.avg_purchase_gap_days
        silent = since is not None and gap is not None and since >= max(SILENT_GAPS * gap, SILENT_MIN_DAYS)
        unlikely_alive = p_alive is not None and p_alive < P_ALIVE_DECLINE
        if falling_activity or falling_spend or silent or unlikely_alive:
            return DECLINE
    if tenure < EXPLORATION_DAYS or len(history) <= 2:
        return EXPLORATION
    if (
        tenure >= STABILITY_DAYS
        and len(recent) + len(prior) >= STABILITY_MIN_PURCHASE_DAYS
        and len(recent) >= HOLDING * len(prior)
    ):
        return STABILITY
    return FORMATION


# ---- refit ---------------------------------------------------------------------------------------------


def fit_value_model(
    history: dict[str, dict[date, float]],
    calibration_end: date,
    *,
    model_id: str,
    clv_settings: ClvSettings,
    tier_shares: tuple[float, float, float],
) -> tuple[ValueModel, dict[str, Any], int]:
    """Fit BG/NBD and Gamma-Gamma on the purchases up to calibration_end; tier thresholds from the
    population's CLV on the last purchase day held. Returns the model, its metrics and the number of customers.
    A backtest is included when there are purchases after calibration_end."""
    summary = vm.summarise(history, calibration_end)
    bg = vm.fit_bgnbd(summary.x, summary.t_x, summary.T)
    gg = vm.fit_gamma_gamma(summary.x, summary.m)
    assert isinstance(bg.params, vm.BgNbdParams) and isinstance(gg.params, vm.GammaGammaParams)
    # Tiers rank customers as they stand now (all purchases, up to the last day held), which is how
    # they are scored after the refit; the parameters come from the calibration period only.
    last_day = max((d for days in history.values() for d in days), default=calibration_end)
    now = vm.summarise(history, last_day)
    clv, _ = vm.clv(bg.params, gg.params, now.x, now.t_x, now.T, now.m, clv_settings)
    thresholds = vm.tier_thresholds(clv, tier_shares)
    model = ValueModel(model_id, bg.params, gg.params, clv_settings, (thresholds[0], thresholds[1], thresholds[2]))
    metrics: dict[str, Any] = {
        "bgnbd_log_likelihood": round(bg.log_likelihood, 3),
        "bgnbd_converged": bg.converged,
        "gamma_gamma_log_likelihood": round(gg.log_likelihood, 3),
        "gamma_gamma_converged": gg.converged,
        "n_customers": bg.n,
        "n_repeat_buyers": gg.n,
        "repeat_purchases": int(summary.x.sum()),
        "clv_as_of": last_day.isoformat(),
        "clv_total": round(float(clv.sum()), 2),
        "clv_median": round(float(np.median(clv)), 2),
        "tier_shares": list(tier_shares),
    }
    if last_day > calibration_end:
        total, rows = vm.backtest(bg.params, history, calibration_end, last_day)
        metrics["backtest"] = {
            "holdout_end": last_day.isoformat(),
            "holdout_weeks": round((last_day - calibration_end).days / 7, 2),
            "actual": total.actual,
            "predicted": round(total.predicted, 1),
            "by_frequency": [
                {"x": r.bucket, "customers": r.customers, "actual": r.actual, "predicted": round(r.predicted, 1)}
                for r in rows
            ],
        }
    return model, metrics, bg.n
