from functools import cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import SERVICE_PORTS, ServiceSettings
from services.scoring.scores.rules import RuleWeights
from services.scoring.scores.sweep import ChangeThresholds
from services.scoring.value.clv import ClvSettings
from services.scoring.value.measures import ValueCosts


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    name: str = "scoring"
    port: int = SERVICE_PORTS["scoring"]
    # Rule weights; override any subset as JSON, e.g. SCORING_WEIGHTS='{"complaint_30d": 0.8}'.
    weights: RuleWeights = Field(default_factory=RuleWeights)

    # CLV of a refit (stored with the version it produces, so its tier thresholds stay consistent).
    clv_horizon_months: int = Field(12, ge=1, le=120)
    clv_annual_discount_rate: float = Field(0.10, ge=0, le=1)  # of future purchases in the CLV
    clv_margin: float = Field(1.0, gt=0, le=1)  # share of spend that is profit (1 = CLV in revenue)
    # Customer pyramid: shares of customers in platinum, gold, iron (the rest is lead), by CLV.
    tier_shares: tuple[float, float, float] = (0.05, 0.15, 0.30)

    # Customer value (docs/reports.md, Value). The pyramid's basis: "clv" (current value, the tier the value
    # model scores) or "contribution" (historical value: margin x revenue - cost to serve, ranked by the
    # same tier shares).
    value_basis: Literal["clv", "contribution"] = "clv"
    # Cost to serve, per unit, in the currency of purchases (revenue counts at clv_margin): each service
    # contact (call, e-mail, chat, visit, ticket, feedback).
    value_cost_per_contact: float = Field(0.0, ge=0)
    # Cost to serve of each complaint (its handling), in the currency of purchases.
    value_cost_per_complaint: float = Field(0.0, ge=0)
    # Cost to serve of each return (its handling and logistics), in the currency of purchases.
    value_cost_per_return: float = Field(0.0, ge=0)
    # What a referral (an interaction in category "referral") is worth when it carries no amount.
    value_referral_value: float = Field(0.0, ge=0)

    # Background jobs (value refit, churn training), run by the consume role.
    refit_interval_hours: float = Field(0.0, ge=0)  # scheduled value refit; 0 = off
    # How often an idle job loop looks for queued jobs where an enqueue in another process cannot wake it
    # (SQLite with the api role in another process).
    job_poll_interval_s: float = Field(0.5, gt=0)
    # How often it looks where every enqueue wakes it (PostgreSQL LISTEN, or the api role in the same process).
    job_idle_poll_s: float = Field(30.0, gt=0)
    job_heartbeat_s: float = Field(5.0, gt=0)  # how often a running job says it is alive
    job_stale_after_s: float = Field(60.0, gt=0)  # a running job without heartbeat this long has crashed
    # Jobs of one kind waiting to run; a request beyond it is refused with 429 (one runs at a time per kind).
    job_queue_limit: int = Field(2, ge=1)
    rescore_chunk: int = Field(500, ge=1)  # customers per transaction when a new model is applied to all
    # History: an event whose business time is older than this many days (an import, a replay) is scored
    # and kept in the score history as any other, but of a consumer batch's run of such events of one
    # customer only the last score is published (score.updated). 0 = every score is published.
    history_horizon_days: float = Field(30.0, ge=0)

    # ---- silent-customer sweep (consume role): risk rises as recency grows, without any event ----
    # Seconds between sweeps; 0 = off. The first sweep runs one interval after the process starts.
    sweep_interval_s: float = Field(3600.0, ge=0)
    # A customer is due when its score (or the sweep's last look) is this many hours older than the clock.
    sweep_min_age_hours: float = Field(24.0, gt=0)
    sweep_batch: int = Field(500, ge=1)  # customers per transaction of a sweep
    # "data": the clock is the latest event time held, so replayed or imported history ages customers
    # as live events do (the clock rescoring jobs use); "wall": the system clock.
    sweep_clock: Literal["data", "wall"] = "data"
    # The smallest moves the sweep publishes, as JSON, e.g. SCORING_SWEEP_MIN_CHANGE='{"churn_risk": 0.02}'
    # (defaults: churn risk or P(alive) 0.01, health 1 point; a new tier or stage always).
    sweep_min_change: ChangeThresholds = Field(default_factory=ChangeThresholds)

    @field_validator("tier_shares")
    @classmethod
    def _shares(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value) or sum(value) >= 1:
            raise ValueError("tier shares must be positive and sum to less than 1 (the rest is lead)")
        return value

    def value_costs(self) -> ValueCosts:
        return ValueCosts(
            per_contact=self.value_cost_per_contact,
            per_complaint=self.value_cost_per_complaint,
            per_return=self.value_cost_per_return,
            margin=self.clv_margin,
            referral_value=self.value_referral_value,
        )

    def clv(self) -> ClvSettings:
        return ClvSettings(self.clv_horizon_months, self.clv_annual_discount_rate, self.clv_margin)


@cache
def get_settings() -> ScoringSettings:
    """Read once, on first use (not at import), so tests can set the environment first or clear the cache."""
    return ScoringSettings()
