from functools import cache

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import Severity
from servicekit import runtime_settings
from servicekit.settings import SERVICE_PORTS, ServiceSettings, local_url

DEFAULT_SLA_HOURS: dict[str, float] = {"critical": 4, "high": 24, "medium": 72, "low": 168}


class InteractionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTERACTION_", extra="ignore")

    name: str = "interaction"
    port: int = SERVICE_PORTS["interaction"]

    # The customer master, asked directly when the local replica has not yet seen a customer.
    customer_url: str = local_url("customer")
    customer_timeout_s: float = Field(2.0, gt=0)  # a slower answer counts as the customer service being down
    # A bulk import asks the customer service once for every customer its replica has not seen yet; an
    # unavailable customer service is asked again for up to this long before those rows are rejected (retryable).
    # The replica's consumer asks once per batch the same way before its events fall back to a call each.
    customer_lookup_wait_s: float = Field(10.0, ge=0)

    # Hours from when the customer complained until the complaint must be resolved, per severity.
    # JSON in the environment, e.g. INTERACTION_COMPLAINT_SLA_HOURS='{"critical": 2}'; missing
    # severities keep their defaults.
    complaint_sla_hours: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SLA_HOURS))

    overdue_check_interval_s: float = Field(30.0, gt=0)  # how often overdue complaints are looked for (consume role)
    # How often parked ERP/SCM events are retried against the customer replica (consume role).
    parked_sweep_interval_s: float = Field(60.0, gt=0)

    @field_validator("customer_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("complaint_sla_hours")
    @classmethod
    def _every_severity_has_a_positive_sla(cls, value: dict[str, float]) -> dict[str, float]:
        # A typo in a severity or a zero SLA fails at startup, not when the first complaint arrives.
        unknown = sorted(set(value) - {s.value for s in Severity})
        if unknown:
            raise ValueError(f"unknown severities {unknown}; use {[s.value for s in Severity]}")
        bad = sorted(k for k, v in value.items() if v <= 0)
        if bad:
            raise ValueError(f"SLA hours must be positive for {bad}")
        return {**DEFAULT_SLA_HOURS, **value}


@cache
def consumer_settings() -> InteractionSettings:
    """The settings of the event handlers, read on first use (not at import, so tests and processes configure
    the environment first)."""
    return InteractionSettings()


async def complaint_sla_hours(session: AsyncSession, settings: InteractionSettings | None = None) -> dict[str, float]:
    """The complaint SLA hours in force: the configured ones, or an administrator's run-time override."""
    return (await runtime_settings.current(session, settings or consumer_settings())).complaint_sla_hours


def cached_complaint_sla_hours(settings: InteractionSettings) -> dict[str, float] | None:
    """complaint_sla_hours when it needs no read of the overrides (cached and fresh), else None."""
    effective = runtime_settings.cached(settings)
    return None if effective is None else effective.complaint_sla_hours
