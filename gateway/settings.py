"""Gateway settings (GATEWAY_*): where the services are, how hard to try reaching them, who may call."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.auth import InternalAuthSettings
from servicekit.production import default_internal_secrets, internal_auth_problems, secret_problem
from servicekit.settings import GATEWAY_PORT, PlatformSettings, local_url, state_dir

SERVICES = ("customer", "interaction", "scoring", "retention")
ROLES = ("agent", "manager", "analyst", "admin", "integration", "importer")
# A local-only default so `python -m gateway token` and `make run` work out of the box; the gateway
# logs a warning at startup while it is in use, and production mode (CRM_PRODUCTION) refuses it. Set
# GATEWAY_JWT_SECRET (or a JWKS URL) anywhere else.
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
    # Budget of a bulk import (`.../bulk`: thousands of rows), of POST /alerts/evaluate and /customers/resolve.
    bulk_timeout_s: float = Field(120.0, gt=0)
    # One pool for all services; keep-alive expiry stays under uvicorn's 5 s idle timeout so the
    # gateway drops a connection before the service does (avoids reusing a half-closed socket).
    max_connections: int = Field(200, ge=1)
    keepalive_expiry_s: float = Field(4.0, ge=0)  # an idle connection is closed after this long
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
    # With a JWKS URL, HS256 tokens are refused unless this is set (both kinds accepted then).
    jwt_allow_hs256: bool = False
    # The key set is kept as long as its Cache-Control max-age says, at least this long (seconds; also
    # when the provider sends no max-age).
    jwks_cache_min_s: float = Field(60.0, ge=0)
    jwks_cache_max_s: float = Field(3600.0, ge=0)  # the upper bound (also for a far larger max-age)
    # A token with an unknown `kid` refetches the key set (a rotation), at most once per this many seconds.
    jwks_refetch_floor_s: float = Field(30.0, ge=0)
    jwks_timeout_s: float = Field(5.0, gt=0)  # how long a fetch of the key set may take
    jwt_algorithms_jwks: list[str] = ["RS256", "ES256"]  # accepted for tokens checked against the JWKS
    jwt_issuer: str = "crm-local"  # required `iss` of every token
    jwt_audience: str = "crm-api"  # required `aud` of every token
    jwt_leeway_s: float = Field(30.0, ge=0)  # clock skew allowed on `exp` and `nbf`
    jwt_role_claim: str = "role"  # the claim that holds the caller's role
    # Verified tokens are cached until they expire (bounded), so a repeat caller costs a dict lookup.
    jwt_cache_size: int = Field(10_000, ge=0)
    api_key_pepper: str = DEV_API_KEY_PEPPER  # secret mixed into stored API-key hashes
    # A revoked key stops working within this many seconds in every gateway process.
    api_key_cache_s: float = Field(5.0, ge=0, le=60)
    # Keys, rate buckets, audit log: postgresql+asyncpg://... shared by every replica (required in
    # production mode); SQLite under CRM_STATE_DIR by default, for one process only.
    database_url: str = ""
    # Object-level checks ask the customer service for a customer's owner; 0: every time. Caching it
    # lets a previous owner keep access that many seconds after a reassignment (on each replica).
    owner_cache_s: float = Field(0.0, ge=0)

    # ---- protection -----------------------------------------------------------------------------------
    # Requests per second per caller (API key or token subject), by role, over all replicas together;
    # bursts up to rate * burst_factor.
    rate_limits: dict[str, float] = {
        "agent": 20.0,
        "manager": 30.0,
        "analyst": 20.0,
        "admin": 50.0,
        "integration": 200.0,
        "respondent": 1.0,  # survey links answered without a login: per source address
        "importer": 50.0,
    }
    # Bulk routes (POST /customers/bulk, /customers/status/bulk, /interactions/bulk) also cost their rows:
    # rows per second per caller, by role (a bucket holds at least one full request of 5,000 rows).
    # The importer role exists for loading history (docs/onboarding.md) and has the largest allowance.
    bulk_rows_per_s: dict[str, float] = {
        "admin": 5000.0,
        "integration": 5000.0,
        "importer": 20000.0,
    }
    rate_burst_factor: float = Field(2.0, ge=1.0)  # the burst a caller may spend at once, as a multiple of its rate
    rate_limit: bool = True  # off: no rate limits (benchmarks)
    # Admission control (gateway.admission): per service, the requests in flight to it are limited; the limit
    # adapts to the latency the gateway observes (grows while the smoothed latency is under the target, shrinks
    # by a tenth when over). A request over the limit waits for a slot at most admission_queue_s behind at most
    # admission_queue_max others, else it is shed with 503, Retry-After and a problem body (code "overloaded"),
    # never forwarded. Off: requests queue wherever they are slowest, and latency grows without bound.
    admission: bool = True
    admission_max_inflight: int = Field(64, ge=1)  # the limit's ceiling (and start), per service and process
    admission_min_inflight: int = Field(16, ge=1)  # the limit's floor: below this many in flight nothing is shed
    admission_target_s: float = Field(0.25, gt=0)  # smoothed service latency above which the limit shrinks
    admission_queue_s: float = Field(0.5, ge=0)  # longest wait for a slot before a request is shed
    admission_queue_max: int = Field(128, ge=0)  # requests waiting for a slot per service; more are shed at once
    # Event streams (SSE) stay open for hours: capped per caller and per gateway process (429 beyond),
    # and carried by their own connection pool so they can never starve ordinary requests of theirs.
    stream_max_per_principal: int = Field(3, ge=1)  # open event streams one caller may hold
    stream_max_total: int = Field(100, ge=1)  # open event streams per gateway process (also its pool size)
    # An upstream stream silent this long is cut (the services send a keep-alive comment every 15 s).
    stream_read_timeout_s: float = Field(60.0, gt=0)
    # The buckets live in the database, shared by every replica; a replica claims this share of a bucket's
    # capacity at once and spends it locally for up to rate_batch_s (one statement per batch, not per request).
    rate_batch_fraction: float = Field(0.1, gt=0, le=1)
    rate_batch_s: float = Field(1.0, gt=0, le=10)  # unspent tokens of a claimed batch lapse after this long
    # Failed authentications (a wrong key or token) per source address and per API-key id: this many at
    # once, refilled at auth_failures_per_minute; beyond, 429 with Retry-After before any credential is checked.
    auth_failures: int = Field(20, ge=1)
    auth_failures_per_minute: float = Field(10.0, gt=0)  # how fast that allowance of failures refills

    # ---- documentation and browsers -------------------------------------------------------------------
    cors_origins: list[str] = []  # browser origins allowed to call the API (JSON list); none by default
    openapi_cache_s: float = Field(60.0, ge=0)  # how long the merged OpenAPI document is kept

    # ---- the retention console (console/, served under /console) -------------------------------------
    console_dir: str = ""  # the built console; empty: console/dist of this checkout (`make run` builds it)
    # Lifetime of a development sign-in token (POST /console/dev-token; never in production mode).
    console_dev_token_ttl_s: int = Field(1800, ge=60, le=86_400)
    # The organisation's OpenID Connect provider the console signs people in with (authorization code + PKCE).
    console_oidc_issuer: str = ""
    console_oidc_client_id: str = ""  # the console's public client id at that provider
    console_oidc_scope: str = "openid profile"  # scopes the console asks for

    platform: PlatformSettings = Field(default_factory=PlatformSettings)  # CRM_PRODUCTION and the like

    @property
    def hs256_enabled(self) -> bool:
        """Whether HS256 tokens are accepted: a secret is set, and either no JWKS or explicitly both."""
        return bool(self.jwt_secret) and (not self.jwks_url or self.jwt_allow_hs256)

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


def production_problems(settings: GatewaySettings, internal: InternalAuthSettings) -> list[str]:
    """Everything production mode (CRM_PRODUCTION) refuses in the gateway, each naming its setting."""
    problems = internal_auth_problems(internal)
    if not settings.auth:
        problems.append("GATEWAY_AUTH is off: every caller would act as an admin; remove it")
    if settings.hs256_enabled:
        problem = secret_problem("GATEWAY_JWT_SECRET", settings.jwt_secret, DEV_JWT_SECRET)
        if problem:
            problems.append(problem + " (or set it empty and use GATEWAY_JWKS_URL)")
    problem = secret_problem("GATEWAY_API_KEY_PEPPER", settings.api_key_pepper, DEV_API_KEY_PEPPER)
    if problem:
        problems.append(problem)
    if not settings.database_url.startswith("postgresql"):
        # Keys, revocations, rate-limit buckets and the audit log must be shared by every replica; a
        # SQLite file is private to one pod, and one replica cannot see whether others run.
        problems.append(
            "GATEWAY_DATABASE_URL must name a PostgreSQL database (postgresql+asyncpg://...): API keys, "
            "revocations, rate limits and the audit log must be shared by every gateway replica"
        )
    if settings.console_oidc_issuer and not settings.console_oidc_issuer.startswith("https://"):
        problems.append(
            "GATEWAY_CONSOLE_OIDC_ISSUER must be an https:// URL: sign-in codes and tokens travel through it"
        )
    if settings.jwks_url and not settings.jwks_url.startswith("https://"):
        problems.append("GATEWAY_JWKS_URL must be an https:// URL: keys fetched in clear could be swapped")
    permissive = [origin for origin in settings.cors_origins if origin.strip() in ("*", "null")]
    if permissive:
        problems.append(
            f"GATEWAY_CORS_ORIGINS allows {permissive[0]!r}: any web page could call the API; list the exact origins"
        )
    return problems


def default_secrets(settings: GatewaySettings, internal: InternalAuthSettings) -> list[str]:
    """The development default secrets this gateway uses (for a startup warning each)."""
    found = default_internal_secrets(internal)
    if settings.auth and settings.hs256_enabled and settings.jwt_secret == DEV_JWT_SECRET:
        found.append("GATEWAY_JWT_SECRET")
    if settings.auth and settings.api_key_pepper == DEV_API_KEY_PEPPER:
        found.append("GATEWAY_API_KEY_PEPPER")
    return found
