"""Who is calling: Bearer JWTs for people, API keys for integrations; then per-caller rate limits.

Rate limits and the throttle on failed authentications are shared by every replica (gateway.ratelimit).

A pure ASGI middleware in front of every /api/ route. It answers 401 (with WWW-Authenticate) when the
credential is missing or invalid, 403 when the caller's role lacks the permission the route declares
(gateway.routes.PERMISSIONS), and 429 (with Retry-After) above the caller's quota or after too many
failed authentications from the same source address or for the same API-key id. Object-level checks
(an agent's own customers) need the request body or the services and happen in gateway.authz.
Health, metrics and the API documentation stay public. Survey links (gateway.routes.PUBLIC) need no
login: their caller is a "respondent", rate-limited per source address, allowed that route only.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.canonical import request_path
from gateway.jwks import JwksCache, JwksError
from gateway.keys import KEY_PREFIX, KeyStore, split_key
from gateway.ratelimit import AuthThrottle, RateLimiter, retry_after
from gateway.routes import OWNER_SCOPED_ROLES, ROLE_PERMISSIONS, is_public, permission_for, resolve
from gateway.settings import GatewaySettings
from servicekit.problems import problem_response

log = logging.getLogger("gateway.auth")

REALM = "crm"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: str
    kind: str  # "user" (JWT), "key" (API key), "public" (a survey link) or "anonymous" (authentication off)
    team: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None  # an API key may hold only part of its role's permissions
    header: str = field(default="", compare=False)

    @property
    def owner_scoped(self) -> bool:
        return self.role in OWNER_SCOPED_ROLES

    @property
    def owners(self) -> frozenset[str]:
        """The customer owners whose customers this caller may see (agent: self; manager: self + team)."""
        return frozenset({self.sub}) | (self.team if self.role == "manager" else frozenset())

    def can(self, permission: str) -> bool:
        granted = ROLE_PERMISSIONS.get(self.role, frozenset())
        return permission in granted and (self.scopes is None or permission in self.scopes)

    @property
    def rate_key(self) -> str:
        return f"{self.kind}:{self.sub}"


def make_principal(
    sub: str, role: str, kind: str, team: frozenset[str] = frozenset(), scopes: frozenset[str] | None = None
) -> Principal:
    # What the services see in X-CRM-Principal (audit only; they do not decide on it).
    header = urlencode({"kind": kind, "role": role, "sub": sub})
    return Principal(sub, role, kind, team, scopes, header)


ANONYMOUS_ADMIN = make_principal("anonymous", "admin", "anonymous")
# The caller of the request at hand, for the upstream client's X-CRM-Principal header.
current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


class AuthError(Exception):
    """The credential is missing or invalid (401)."""

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


class Authenticator:
    def __init__(self, settings: GatewaySettings, keys: KeyStore, jwks: JwksCache | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self._tokens: dict[str, tuple[Principal, float]] = {}
        self._jwks = jwks
        if jwks is None and settings.jwks_url:
            self._jwks = JwksCache(
                settings.jwks_url,
                min_s=settings.jwks_cache_min_s,
                max_s=settings.jwks_cache_max_s,
                refetch_floor_s=settings.jwks_refetch_floor_s,
                timeout_s=settings.jwks_timeout_s,
            )
        # With a JWKS, HS256 (and its shared secret) is accepted only when explicitly allowed.
        self._hs256 = settings.hs256_enabled

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if api_key:
            return await self._key(api_key)
        if not authorization:
            raise AuthError("Send a Bearer token or an X-API-Key header.", error=None)
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthError("Use the Bearer scheme: 'Authorization: Bearer <token>'.", error="invalid_request")
        if credential.startswith(KEY_PREFIX):
            return await self._key(credential)
        return await self._jwt(credential)

    async def _key(self, key: str) -> Principal:
        row = await self.keys.verify(key)
        if row is None:
            raise AuthError("The API key is unknown, revoked or expired.")
        scopes = frozenset(row.scopes) if row.scopes is not None else None
        return make_principal(f"key:{row.id}", row.role, "key", scopes=scopes)

    async def _jwt(self, token: str) -> Principal:
        now = time.time()
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm == "HS256" and self._hs256:
                key: Any = self.settings.jwt_secret
            elif self._jwks is not None and algorithm in self.settings.jwt_algorithms_jwks:
                key = await self._jwks_key(header.get("kid"))
            else:
                raise AuthError(f"Tokens signed with {algorithm!r} are not accepted.")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.settings.jwt_leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"The token is not valid: {exc}.") from exc
        role = claims.get(self.settings.jwt_role_claim)
        team = claims.get("team") or []
        if not isinstance(role, str) or not isinstance(team, list):
            raise AuthError(f"The token needs a string '{self.settings.jwt_role_claim}' claim.")
        principal = make_principal(str(claims["sub"]), role, "user", frozenset(str(t) for t in team))
        if self.settings.jwt_cache_size:
            if len(self._tokens) >= self.settings.jwt_cache_size:
                self._tokens.clear()
            self._tokens[token] = (principal, float(claims["exp"]))
        return principal

    async def _jwks_key(self, kid: Any) -> Any:
        assert self._jwks is not None
        try:
            return await self._jwks.key(kid if isinstance(kid, str) else None)
        except JwksError as exc:
            raise AuthError(f"No signing key for this token: {exc}.") from exc

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()


def raw_path(scope: Scope) -> str:
    """The request's canonical path (gateway.canonical), encoded: the one path the permission table
    judges and the proxy forwards, so the decision is always about what routing serves."""
    return request_path(scope).encoded


def _denied(principal: Principal, method: str, path: str) -> tuple[str, str | None] | None:
    """(why, permission) if the caller's role may not make this request at all; None if it may."""
    rule = permission_for(method, path)
    if rule is not None:
        if principal.can(rule.permission):
            return None
        return f"The role {principal.role!r} does not grant {rule.permission!r}.", rule.permission
    if resolve(path) is None or principal.role == "admin":
        return None  # an unknown path answers 404 for anyone; admins reach every route
    # Default deny: a method or path no rule covers.
    return "No permission covers this request for your role.", None


def _is_public(path: str) -> bool:
    return not path.startswith("/api/")


class GatewayAuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: GatewaySettings,
        authenticator: Authenticator,
        limiter: RateLimiter,
        throttle: AuthThrottle,
    ) -> None:
        self.app = app
        self.settings = settings
        self.authenticator = authenticator
        self.limiter = limiter
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.settings.auth:
            principal = ANONYMOUS_ADMIN
        elif is_public(scope["method"], raw_path(scope)):
            # A survey link: no login; the caller is rate-limited per source address (Retry-After on 429).
            client = scope.get("client")
            principal = make_principal(f"ip:{client[0] if client else 'unknown'}", "respondent", "public")
        else:
            authorization = api_key = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"x-api-key":
                    api_key = value.decode("latin-1").strip()
            # Sources (and key ids) with too many failed attempts are refused before any check.
            subjects = _throttle_subjects(scope, authorization, api_key)
            wait = self.throttle.blocked(subjects)
            if wait > 0:
                await _too_many(wait, "Too many failed authentications; retry later.")(scope, receive, send)
                return
            try:
                principal = await self.authenticator.authenticate(authorization, api_key)
            except AuthError as exc:
                # A credential was presented and was wrong: count it (a missing one is not a guess).
                wait = await self.throttle.failed(subjects) if exc.error is not None else 0.0
                if wait > 0:
                    await _too_many(wait, "Too many failed authentications; retry later.")(scope, receive, send)
                    return
                challenge = f'Bearer realm="{REALM}"'
                if exc.error:
                    challenge += f', error="{exc.error}"'
                response = problem_response(
                    401, "Unauthorized", exc.detail, code="unauthorized", headers={"WWW-Authenticate": challenge}
                )
                await response(scope, receive, send)
                return
            # Known from here on, so the audit log names the caller of a denied request too.
            scope.setdefault("state", {})["principal"] = principal
            denied = _denied(principal, scope["method"], raw_path(scope))
            if denied is not None:
                response = problem_response(403, "Forbidden", denied[0], code="forbidden", permission=denied[1])
                await response(scope, receive, send)
                return
        if self.settings.rate_limit:
            wait = await self.limiter.take(principal.rate_key, principal.role)
            if wait > 0:
                detail = f"Rate limit for the role {principal.role!r} exceeded; retry after {retry_after(wait)} s."
                await _too_many(wait, detail)(scope, receive, send)
                return
        scope.setdefault("state", {})["principal"] = principal
        token = current_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            current_principal.reset(token)


def _throttle_subjects(scope: Scope, authorization: str | None, api_key: str | None) -> list[str]:
    """What failed authentications are counted against: the source address and a presented API-key id."""
    client = scope.get("client")
    subjects = [f"ip:{client[0] if client else 'unknown'}"]
    credential = api_key or (authorization or "").partition(" ")[2].strip()
    parts = split_key(credential) if credential.startswith(KEY_PREFIX) else None
    if parts is not None:
        subjects.append(f"key:{parts[0]}")
    return subjects


def _too_many(wait: float, detail: str) -> Any:
    return problem_response(
        429, "Too many requests", detail, code="rate_limited", headers={"Retry-After": retry_after(wait)}
    )
