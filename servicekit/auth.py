"""The internal credential: only callers holding the platform's shared secret may use a service's API.

The gateway (and a service calling another service) signs each request under ``CRM_INTERNAL_TOKEN``
with an HMAC-SHA256 of: method, decoded path, canonical query string, SHA-256 of the body, a timestamp,
a random nonce and the principal. A service rejects any request without a valid signature with 401
problem+json; it computes the body digest over the bytes it actually received (the middleware buffers
the body, up to ``CRM_INTERNAL_AUTH_MAX_BODY_BYTES``), so a changed query or body fails. A signature is
accepted only within ``CRM_INTERNAL_AUTH_MAX_AGE_S`` of its timestamp (either way: clock skew), and only
once per process: each process remembers the nonces it accepted for that long (a bounded in-memory set,
so a captured request can still be replayed to a *different* replica within the window; the window
keeps that short). The external token never travels inside the system; ``X-CRM-Principal`` carries who
the caller acted for (for audit logs; it is covered by the signature so it cannot be swapped).

Health and metrics stay open (probes and Prometheus carry no credential). ``CRM_INTERNAL_AUTH=off``
disables the check for local debugging (production mode refuses it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlencode

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.problems import problem_response

INTERNAL_HEADER = "x-crm-internal"
PRINCIPAL_HEADER = "x-crm-principal"
_INTERNAL_HEADER_B = INTERNAL_HEADER.encode()
_PRINCIPAL_HEADER_B = PRINCIPAL_HEADER.encode()
# Paths every process serves without a credential: probes and the Prometheus scrape.
PUBLIC_PREFIXES = ("/health/",)
PUBLIC_PATHS = frozenset({"/metrics"})
# The development default; production mode refuses it (servicekit.production).
DEV_INTERNAL_TOKEN = "local-internal-token"
_EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


class InternalAuthSettings(BaseSettings):
    """CRM_INTERNAL_TOKEN (shared secret), CRM_INTERNAL_AUTH (on/off), CRM_INTERNAL_AUTH_MAX_AGE_S."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    # Shared secret the gateway signs its calls into the services with; `make run` and the e2e tests
    # generate a random one per run unless it is set. Production mode needs one of 32 bytes or more.
    internal_token: str = DEV_INTERNAL_TOKEN
    # Services refuse calls without the gateway's signature (off: for debugging a service directly).
    internal_auth: bool = True
    # Allowed age (and clock skew) of a signature, in seconds; a nonce is accepted once within it.
    internal_auth_max_age_s: float = Field(30.0, gt=0)
    # Largest request body a service buffers to check its digest; larger ones are refused with 413.
    internal_auth_max_body_bytes: int = Field(16 * 1024 * 1024, ge=0)
    # Nonces each process remembers to refuse replays (the oldest are forgotten beyond this).
    internal_auth_replay_cache_size: int = Field(100_000, ge=0)


@lru_cache(maxsize=1)
def current_settings() -> InternalAuthSettings:
    """Read on first use (never at import time); tests call ``current_settings.cache_clear()``."""
    return InternalAuthSettings()


def canonical_query(query: str | bytes) -> str:
    """The query string as the service will parse it, re-encoded one way.

    Clients may percent-encode the same query differently (httpx re-quotes, aiohttp sends it as is);
    any two spellings the service would parse alike sign alike, and any that parse differently do not.
    """
    if not query:
        return ""  # what parsing and encoding nothing gives, without the work (most requests have no query)
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    return urlencode(parse_qsl(query, keep_blank_values=True), quote_via=quote)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_DIGEST


def _message(
    method: str, path: str, query: str | bytes, digest: str, timestamp: str, nonce: str, principal: str
) -> bytes:
    # The decoded path: the signer may percent-encode differently from how the server decodes.
    parts = (method.upper(), unquote(path), canonical_query(query), digest, timestamp, nonce, principal)
    return "\n".join(parts).encode()


def _mac(token: str, message: bytes) -> str:
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def sign(
    method: str,
    path: str,
    *,
    token: str,
    timestamp: int,
    query: str | bytes = "",
    body: bytes = b"",
    principal: str = "",
    nonce: str | None = None,
) -> str:
    """The X-CRM-Internal value: ``t=<unix seconds>,n=<nonce>,v2=<hex hmac-sha256>``."""
    nonce = nonce or secrets.token_hex(12)
    mac = _mac(token, _message(method, path, query, body_digest(body), str(timestamp), nonce, principal))
    return f"t={timestamp},n={nonce},v2={mac}"


def parse(value: str) -> tuple[int, str, str] | None:
    """(timestamp, nonce, mac) of a header value, None if malformed."""
    try:
        fields = dict(part.split("=", 1) for part in value.split(","))
        return int(fields["t"]), fields["n"], fields["v2"]
    except (KeyError, ValueError):
        return None


def verify(
    value: str,
    method: str,
    path: str,
    *,
    token: str,
    max_age_s: float,
    query: str | bytes = "",
    body: bytes = b"",
    principal: str = "",
    now: float | None = None,
) -> bool:
    """Whether ``value`` is a valid signature of exactly this request, made within ``max_age_s`` of now."""
    parsed = parse(value)
    if parsed is None:
        return False
    return verify_parsed(
        parsed, method, path, token=token, max_age_s=max_age_s, query=query, body=body, principal=principal, now=now
    )


def verify_parsed(
    parsed: tuple[int, str, str],
    method: str,
    path: str,
    *,
    token: str,
    max_age_s: float,
    query: str | bytes = "",
    body: bytes = b"",
    principal: str = "",
    now: float | None = None,
) -> bool:
    """verify() of a header value already parsed (parse()), so a server parsing it once checks it."""
    timestamp, nonce, mac = parsed
    if abs((time.time() if now is None else now) - timestamp) > max_age_s:
        return False
    expected = _mac(token, _message(method, path, query, body_digest(body), str(timestamp), nonce, principal))
    return hmac.compare_digest(expected, mac)


class ReplayGuard:
    """The nonces accepted within the last ``window_s`` seconds, at most ``capacity`` of them, per process."""

    def __init__(self, window_s: float, capacity: int) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> when it stops mattering

    def first_use(self, nonce: str, now: float | None = None) -> bool:
        """Record ``nonce``; False if it was already used within the window."""
        now = time.time() if now is None else now
        seen = self._seen
        while seen and next(iter(seen.values())) < now:
            seen.popitem(last=False)
        if nonce in seen:
            return False
        if self.capacity:
            while len(seen) >= self.capacity:
                seen.popitem(last=False)  # the oldest: the guard is bounded, not exhaustive
            # A timestamp is accepted up to window_s either side of now, so remember it for twice that.
            seen[nonce] = now + 2 * self.window_s
        return True


def internal_headers(
    method: str,
    path: str,
    *,
    query: str | bytes = "",
    body: bytes = b"",
    principal: str = "",
    settings: InternalAuthSettings | None = None,
) -> dict[str, str]:
    """Headers that authenticate one call to another service: ``path`` without the query, ``query`` and
    ``body`` exactly as sent. Sign each attempt anew: a service accepts a signature only once.

    ``principal`` names whom the call is made for, e.g. ``role=agent&sub=alice`` or ``service:interaction``.
    """
    settings = settings or current_settings()
    headers = {
        INTERNAL_HEADER: sign(
            method,
            path,
            token=settings.internal_token,
            timestamp=int(time.time()),
            query=query,
            body=body,
            principal=principal,
        )
    }
    if principal:
        headers[PRINCIPAL_HEADER] = principal
    return headers


class InternalAuthMiddleware:
    """Pure ASGI: 401 problem+json for any request without a valid internal credential.

    The body is read (bounded) before the app runs, so its digest is checked against the bytes that
    arrived, then handed to the app unchanged. The verified principal (if any) is put in
    ``scope["state"]["principal"]`` for audit logging.
    """

    def __init__(self, app: ASGIApp, settings: InternalAuthSettings | None = None) -> None:
        self.app = app
        self.settings = settings or InternalAuthSettings()
        self.replays = ReplayGuard(self.settings.internal_auth_max_age_s, self.settings.internal_auth_replay_cache_size)

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
        if signature is None or (parsed := parse(signature)) is None:
            await _refuse(scope, receive, send)
            return
        try:
            body = await _read_body(receive, self.settings.internal_auth_max_body_bytes)
        except _TooLarge:
            limit = self.settings.internal_auth_max_body_bytes
            response = problem_response(
                413, "Content too large", f"The request body exceeds {limit} bytes.", code="payload_too_large"
            )
            await response(scope, receive, send)
            return
        if body is None:
            return  # the client went away: nobody to answer
        valid = verify_parsed(
            parsed,
            scope["method"],
            scope["path"],
            token=self.settings.internal_token,
            max_age_s=self.settings.internal_auth_max_age_s,
            query=scope.get("query_string", b""),
            body=body,
            principal=principal or "",
        )
        # Only a valid signature's nonce is remembered: forged ones cannot fill the set.
        if not valid or not self.replays.first_use(parsed[1]):
            await _refuse(scope, receive, send)
            return
        if principal:
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, _replay_body(body, receive), send)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(
        401,
        "Unauthorized",
        "This service accepts only calls signed with the platform's internal credential; "
        "use the public API through the gateway.",
        code="internal_credential_required",
    )
    await response(scope, receive, send)


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (None if the client disconnected); _TooLarge once it exceeds ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then whatever the client sends (e.g. disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
