"""The internal credential: only callers holding the platform's shared secret may use a service's API.

The gateway (and a service calling another service) signs each request with an HMAC of method, path and
a timestamp under ``CRM_INTERNAL_TOKEN``; a service rejects any request without a fresh, valid signature
with 401 problem+json. The signature is short-lived (``CRM_INTERNAL_AUTH_MAX_AGE_S``), so a captured
header is useless soon after, and it is bound to one method and path, so it cannot be replayed elsewhere.
The external token never travels inside the system; ``X-CRM-Principal`` carries who the caller acted for
(informational, for audit logs; it is covered by the signature so it cannot be swapped).

Health and metrics stay open (probes and Prometheus carry no credential). ``CRM_INTERNAL_AUTH=off``
disables the check for local debugging.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache
from urllib.parse import unquote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from servicekit.problems import problem_response

INTERNAL_HEADER = "x-crm-internal"
PRINCIPAL_HEADER = "x-crm-principal"
_INTERNAL_HEADER_B = INTERNAL_HEADER.encode()
_PRINCIPAL_HEADER_B = PRINCIPAL_HEADER.encode()
# Paths every process serves without a credential: probes and the Prometheus scrape.
PUBLIC_PREFIXES = ("/health/",)
PUBLIC_PATHS = frozenset({"/metrics"})


class InternalAuthSettings(BaseSettings):
    """CRM_INTERNAL_TOKEN (shared secret), CRM_INTERNAL_AUTH (on/off), CRM_INTERNAL_AUTH_MAX_AGE_S."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    # Shared secret the gateway signs its calls into the services with; `make run` and the e2e tests
    # generate a random one per run unless it is set.
    internal_token: str = "local-internal-token"
    # Services refuse calls without the gateway's signature (off: for debugging a service directly).
    internal_auth: bool = True
    # Allowed age (and clock skew) of a signature, in seconds.
    internal_auth_max_age_s: float = Field(30.0, gt=0)


@lru_cache(maxsize=1)
def current_settings() -> InternalAuthSettings:
    """Read on first use (never at import time); tests call ``current_settings.cache_clear()``."""
    return InternalAuthSettings()


def _message(method: str, path: str, timestamp: str, principal: str) -> bytes:
    # The decoded path: the signer may percent-encode differently from how the server decodes.
    return f"{method.upper()}\n{unquote(path)}\n{timestamp}\n{principal}".encode()


def sign(method: str, path: str, *, token: str, timestamp: int, principal: str = "") -> str:
    """The X-CRM-Internal value: ``t=<unix seconds>,v1=<hex hmac-sha256>``."""
    digest = hmac.new(token.encode(), _message(method, path, str(timestamp), principal), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    value: str, method: str, path: str, *, token: str, max_age_s: float, principal: str = "", now: float | None = None
) -> bool:
    """Whether ``value`` is a valid, fresh signature of this method, path and principal."""
    try:
        fields = dict(part.split("=", 1) for part in value.split(","))
        timestamp = fields["t"]
        signature = fields["v1"]
        age = (time.time() if now is None else now) - int(timestamp)
    except (KeyError, ValueError):
        return False
    if abs(age) > max_age_s:
        return False
    expected = hmac.new(token.encode(), _message(method, path, timestamp, principal), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def internal_headers(
    method: str, path: str, *, principal: str = "", settings: InternalAuthSettings | None = None
) -> dict[str, str]:
    """Headers that authenticate a call to another service's ``path`` (without the query string).

    ``principal`` names whom the call is made for, e.g. ``role=agent&sub=alice`` or ``service:interaction``.
    """
    settings = settings or current_settings()
    headers = {
        INTERNAL_HEADER: sign(
            method, path, token=settings.internal_token, timestamp=int(time.time()), principal=principal
        )
    }
    if principal:
        headers[PRINCIPAL_HEADER] = principal
    return headers


class InternalAuthMiddleware:
    """Pure ASGI: 401 problem+json for any request without a valid internal credential.

    The verified principal (if any) is put in ``scope["state"]["principal"]`` for audit logging.
    """

    def __init__(self, app: ASGIApp, settings: InternalAuthSettings | None = None) -> None:
        self.app = app
        self.settings = settings or InternalAuthSettings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.internal_auth or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        signature = principal = None
        for name, value in scope["headers"]:
            if name == _INTERNAL_HEADER_B:
                signature = value.decode("latin-1")
            elif name == _PRINCIPAL_HEADER_B:
                principal = value.decode("latin-1")
        if signature is None or not verify(
            signature,
            scope["method"],
            scope["path"],
            token=self.settings.internal_token,
            max_age_s=self.settings.internal_auth_max_age_s,
            principal=principal or "",
        ):
            response = problem_response(
                401,
                "Unauthorized",
                "This service accepts only calls signed with the platform's internal credential; "
                "use the public API through the gateway.",
                code="internal_credential_required",
            )
            await response(scope, receive, send)
            return
        if principal:
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
