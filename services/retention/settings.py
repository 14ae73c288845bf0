from functools import cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.events.contracts.common import Severity
from servicekit.settings import ServiceSettings


class RetentionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RETENTION_", extra="ignore")

    name: str = "retention"
    port: int = 8004

    # Defaults of the built-in alert rules (see rules.RuleSet.from_settings); a stored rules table
    # can replace them later without touching the handlers.
    risk_threshold: float = Field(0.6, ge=0, le=1)
    # Severity values (a StrEnum, so they compare equal to "high", "critical"); a typo fails at startup.
    severe_complaint_severities: list[Severity] = [Severity.high, Severity.critical]


@cache
def get_settings() -> RetentionSettings:
    """Settings for code without a request or app at hand (event handlers); read once, on first use."""
    return RetentionSettings()
