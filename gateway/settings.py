"""Gateway settings (GATEWAY_*): where the services are, how hard to try reaching them, who may call."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.settings import GATEWAY_PORT, local_url, state_dir

SERVICES = ("customer", "interaction", "scoring", "retention")
ROLES = ("agent", "manager", "analyst", "admin", "integration")
# A local-only default so `python -m gateway token` and `make run` work out of the box; the gateway
# logs a warning at startup while it is in use. Set GATEWAY_JWT_SECRET (or a JWKS URL) anywhere else.
DEV_JWT_SECRET = "local-dev-jwt-secret-change-me-0123456789"
DEV_API_KEY_PEPPER = "local-dev-api-key-pepper-change-me"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    name: str = "gateway"
    host: str = "127.0.0.1"  # address the public API listens on
    port: int = GATEWAY_PORT  # its port
    log_level: str = "INFO"  # JSON logs on stdout

    customer_url: str = local_url("customer")  # upstream: the customer service
    interaction_url: str = local_url("interaction")  # upstream: the interaction service
    scoring_url: str = local_url("scoring")  # upstream: the scoring service
    retention_url: str = local_url("retention")  # upstream: the retention service

    # Whole-request budget per upstream call; connect is short so a dead service fails fast.
    timeout_s: float = Field(10.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0)  # timeout to open a connection to a service
    bulk_timeout_s: float = Field(120.0, gt=0)  # budget of a bulk import (`.../bulk`): thousands of rows
    # One pool for all services; keep-alive expiry stays under uvicorn's 5 s idle timeout so the
    # gateway drops a connection before the service does (avoids reusing a half-closed socket).
    max_connections: int = Field(200, ge=1)
    max_keepalive_connections: int = Field(50, ge=0)  # idle connections kept open
    keepalive_expiry_s: float = Field(4.0, ge=0)  # an idle connection is closed after this long
    # "aiohttp" (faster under concurrency, see bench/gateway_overhead.py) or "httpx".
    upstream_client: Literal["aiohttp", "httpx"] = "aiohttp"
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=0)  # larger request bodies are refused with 413
    # Readiness and the 360 view must answer even when one service hangs: readiness waits this long per service.
    ready_timeout_s: float = Field(2.0, gt=0)
    # Per service call of the 360 view (a part that times out is left out) and of object-level checks.
    view360_timeout_s: float = Field(3.0, gt=0)
    view360_interactions: int = Field(20, ge=1, le=200)  # recent interactions in the 360 view

    # ---- authentication -----------------------------------------------------------------------------
    # "off" only for local debugging and the JWT on/off benchmark: every caller is then an admin.
    auth: bool = True
    jwt_secret: str = DEV_JWT_SECRET  # HS256 tokens (local use); empty disables HS256
    jwks_url: str = ""  # RS256/ES256 tokens from an identity provider, keys fetched from here
    jwt_algorithms_jwks: list[str] = ["RS256", "ES256"]  # accepted for tokens checked against the JWKS
    jwt_issuer: str = "crm-local"  # required `iss` of every token
    jwt_audience: str = "crm-api"  # required `aud` of every token
    jwt_leeway_s: float = Field(30.0, ge=0)  # clock skew allowed on `exp` and `nbf`
    jwt_role_claim: str = "role"  # the claim that holds the caller's role
    # Verified tokens are cached until they expire (bounded), so a repeat caller costs a dict lookup.
    jwt_cache_size: int = Field(10_000, ge=0)
    api_key_pepper: str = DEV_API_KEY_PEPPER  # secret mixed into stored API-key hashes
    # A revoked key stops working within this many seconds in every gateway process.
    api_key_cache_s: float = Field(5.0, ge=0)
    database_url: str = ""  # the key store; SQLite under CRM_STATE_DIR by default
    # Object-level checks ask the customer service for a customer's owner; 0: every time. Caching it
    # lets a previous owner keep access that many seconds after a reassignment (on each replica).
    owner_cache_s: float = Field(0.0, ge=0)

    # ---- protection -----------------------------------------------------------------------------------
    # Requests per second per caller (API key or token subject), by role; bursts up to rate * burst_factor.
    rate_limits: dict[str, float] = {
        "agent": 20.0,
        "manager": 30.0,
        "analyst": 20.0,
        "admin": 50.0,
        "integration": 200.0,
    }
    rate_burst_factor: float = Field(2.0, ge=1.0)  # the burst a caller may spend at once, as a multiple of its rate
    rate_limit: bool = True  # off: no rate limits (benchmarks)

    # ---- documentation and browsers -------------------------------------------------------------------
    cors_origins: list[str] = []  # browser origins allowed to call the API (JSON list); none by default
    openapi_cache_s: float = Field(60.0, ge=0)  # how long the merged OpenAPI document is kept

    @model_validator(mode="after")
    def _default_database(self) -> GatewaySettings:
        if not self.database_url:
            path = state_dir() / "gateway.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.database_url = f"sqlite+aiosqlite:///{path}"
        return self

    @field_validator("customer_url", "interaction_url", "scoring_url", "retention_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def service_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url") for name in SERVICES}
