from functools import cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings
from services.scoring.rules import RuleWeights


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")

    name: str = "scoring"
    port: int = 8003
    # Rule weights; override any subset as JSON, e.g. SCORING_WEIGHTS='{"complaint_30d": 0.8}'.
    weights: RuleWeights = Field(default_factory=RuleWeights)


@cache
def get_settings() -> ScoringSettings:
    """Read once, on first use (not at import), so tests can set the environment first or clear the cache."""
    return ScoringSettings()
