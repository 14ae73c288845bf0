from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import SERVICE_PORTS, ServiceSettings


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_", extra="ignore")

    name: str = "customer"
    port: int = SERVICE_PORTS["customer"]

    # The services that must confirm an erasure before it is complete (CUSTOMER_ERASURE_SERVICES, a JSON list).
    erasure_services: list[str] = Field(default_factory=lambda: ["customer", "interaction", "scoring", "retention"])
    # Attributes known to hold no personal data (e.g. ["plan", "region"]) survive an erasure; all others go.
    erasure_keep_attributes: list[str] = Field(default_factory=list)
    # How long a POST /customers Idempotency-Key is remembered: a retry within it gets the first answer.
    idempotency_key_ttl_hours: float = Field(24.0, gt=0)
    idempotency_purge_interval_s: float = Field(3600.0, gt=0)  # how often expired keys are deleted
