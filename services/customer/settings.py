from functools import cache

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from servicekit.settings import SERVICE_PORTS, ServiceSettings
from services.customer.points.loyalty_points import DEFAULT_TIERS, Tier, check_tiers


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_", extra="ignore")

    name: str = "customer"
    port: int = SERVICE_PORTS["customer"]
    # Nobody waits on this consumer's events (score tiers for report filters, loyalty points, consents,
    # erasure confirmations), so it gathers half a second per fetch: a fifth of the batches, each with its
    # fixed cost, of the 100 ms wait the retention path needs (docs/performance/2026-12-08-cpu-9.md).
    consumer_fetch_wait_ms: int | None = Field(500, ge=0)

    # The services that must confirm an erasure before it is complete (CUSTOMER_ERASURE_SERVICES, a JSON list).
    erasure_services: list[str] = Field(default_factory=lambda: ["customer", "interaction", "scoring", "retention"])
    # Attributes known to hold no personal data (classification codes such as ["tier", "plan"]): the only
    # ones customer events carry (scoring's model features, retention's tier) and the only ones an erasure
    # keeps. Every other attribute counts as personal data: it never leaves this service.
    erasure_keep_attributes: list[str] = Field(default_factory=lambda: ["tier", "value_tier"])
    # How long a POST /customers Idempotency-Key is remembered: a retry within it gets the first answer.
    idempotency_key_ttl_hours: float = Field(24.0, gt=0)
    idempotency_purge_interval_s: float = Field(3600.0, gt=0)  # how often expired keys are deleted
    # Loyalty member tiers (CUSTOMER_LOYALTY_TIERS, a JSON list of {code, min_lifetime_points, benefits}): a
    # customer is in the highest tier whose threshold the lifetime earned points reach (docs/loyalty-points.md).
    loyalty_tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS))

    @field_validator("loyalty_tiers")
    @classmethod
    def _unique_tiers(cls, value: list[Tier]) -> list[Tier]:
        check_tiers(value)
        return value


@cache
def get_settings() -> CustomerSettings:
    """Settings for code without a request at hand (building events); read once, on first use."""
    return CustomerSettings()
