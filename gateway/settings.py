"""Gateway settings (GATEWAY_*): where the services are and how hard to try reaching them."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("customer", "interaction", "scoring", "retention")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    name: str = "gateway"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    customer_url: str = "http://127.0.0.1:8001"
    interaction_url: str = "http://127.0.0.1:8002"
    scoring_url: str = "http://127.0.0.1:8003"
    retention_url: str = "http://127.0.0.1:8004"

    # Whole-request budget per upstream call; connect is short so a dead service fails fast.
    timeout_s: float = Field(10.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0)
    # One pool for all services; keep-alive expiry stays under uvicorn's 5 s idle timeout so the
    # gateway drops a connection before the service does (avoids reusing a half-closed socket).
    max_connections: int = Field(200, ge=1)
    max_keepalive_connections: int = Field(50, ge=0)
    keepalive_expiry_s: float = Field(4.0, ge=0)
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=0)
    # Readiness and the 360 view must answer even when one service hangs.
    ready_timeout_s: float = Field(2.0, gt=0)
    view360_timeout_s: float = Field(3.0, gt=0)
    view360_interactions: int = Field(20, ge=1, le=200)

    @field_validator("customer_url", "interaction_url", "scoring_url", "retention_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def service_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url") for name in SERVICES}
