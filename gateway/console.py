"""The retention console: its built files under /console, its sign-in settings, and the local Swagger UI.

The console (console/, a TypeScript single-page app) is built into console/dist by `make run`. Every
answer under /console carries a strict Content-Security-Policy: scripts, styles, images and API calls
only from this origin, no inline script, never framed. A path that names no built file answers the app's
index.html, so a reload on /console/customers/<id> opens that page.

Development sign-in (``POST /console/dev-token``) mints a short-lived HS256 token for a chosen user and
role; it exists only while production mode is off and HS256 is enabled, and answers 404 otherwise. In
production the console signs people in at the organisation's OpenID Connect provider (authorization
code with PKCE) whose tokens the gateway validates against GATEWAY_JWKS_URL.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jwt
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from gateway.settings import ROLES, GatewaySettings
from servicekit.problems import not_found, problem_response, render_problem
from servicekit.settings import REPO_ROOT

CONSOLE_PATH = "/console"
DOCS_ASSETS = CONSOLE_PATH + "/docs-assets"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Built assets carry a content hash in their name: cached for a year; everything else is revalidated.
HASHED = re.compile(r"^assets/.+-[A-Za-z0-9_-]{8,}\.(js|css|svg|woff2?)$")
SUBJECT = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
Role = Literal["agent", "manager", "analyst", "admin", "integration"]


class DevTokenRequest(BaseModel):
    sub: Annotated[str, Field(pattern=SUBJECT, description="the user, e.g. an agent id that owns customers")]
    role: Role
    team: Annotated[list[Annotated[str, Field(pattern=SUBJECT)]], Field(max_length=50)] = []


class DevToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    sub: str
    role: str


def dev_sign_in_enabled(settings: GatewaySettings) -> bool:
    return settings.auth and settings.hs256_enabled and not settings.platform.production


def mint_token(settings: GatewaySettings, *, sub: str, role: str, ttl_s: int, team: list[str] | None = None) -> str:
    """A local HS256 token the gateway with the same GATEWAY_JWT_SECRET accepts."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if team:
        claims["team"] = team
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def _not_found() -> Response:
    return render_problem(not_found("page", title="Not Found", detail="No such page."))


def content_security_policy(settings: GatewaySettings) -> str:
    """CSP, plus the OpenID Connect provider's origin in connect-src when one is set: the console reads its
    discovery document and trades the authorization code at its token endpoint."""
    issuer = urlsplit(settings.console_oidc_issuer)
    if settings.console_oidc_issuer and issuer.scheme in ("https", "http") and issuer.netloc:
        return CSP.replace("connect-src 'self'", f"connect-src 'self' {issuer.scheme}://{issuer.netloc}")
    return CSP


def _secured(response: Response, csp: str = CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _file_in(root: Path, relative: str) -> Path | None:
    """The built file ``relative`` names inside ``root``, or None (never a path outside it)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def console_router(settings: GatewaySettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    root = Path(settings.console_dir or REPO_ROOT / "console" / "dist").resolve()
    csp = content_security_policy(settings)

    def secured(response: Response) -> Response:
        return _secured(response, csp)

    @router.get(CONSOLE_PATH + "/config.json")
    async def console_config() -> Response:
        body: dict[str, Any] = {
            "dev_sign_in": dev_sign_in_enabled(settings),
            "roles": list(ROLES),
            "oidc": {
                "issuer": settings.console_oidc_issuer,
                "client_id": settings.console_oidc_client_id,
                "scope": settings.console_oidc_scope,
            }
            if settings.console_oidc_issuer and settings.console_oidc_client_id
            else None,
        }
        return secured(JSONResponse(body, headers={"Cache-Control": "no-store"}))

    @router.post(CONSOLE_PATH + "/dev-token", response_model=DevToken)
    async def dev_token(body: DevTokenRequest) -> Response:
        if not dev_sign_in_enabled(settings):
            return secured(_not_found())
        ttl = settings.console_dev_token_ttl_s
        token = mint_token(settings, sub=body.sub, role=body.role, ttl_s=ttl, team=body.team)
        answer = DevToken(access_token=token, expires_in=ttl, sub=body.sub, role=body.role)
        return secured(JSONResponse(answer.model_dump(), headers={"Cache-Control": "no-store"}))

    @router.get(CONSOLE_PATH)
    async def console_root() -> Response:
        return await console_file("")

    @router.get(CONSOLE_PATH + "/{path:path}")
    async def console_file(path: str) -> Response:
        found = _file_in(root, path)
        if found is None:
            if path.startswith(("assets/", "docs-assets/")):
                return secured(_not_found())  # a missing script is a 404, never the page
            found = _file_in(root, "index.html")
            if found is None:
                return secured(
                    problem_response(
                        503,
                        "Console not built",
                        "The console has not been built: `make run` builds it (npm ci && npm run build in console/).",
                        code="console_not_built",
                    )
                )
        relative = found.relative_to(root).as_posix()
        cache = "public, max-age=31536000, immutable" if HASHED.match(relative) else "no-cache"
        return secured(FileResponse(found, headers={"Cache-Control": cache}))

    return router


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its scripts and styles served from the console build, so it works offline."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=app.title + " - docs",
            swagger_js_url=DOCS_ASSETS + "/swagger-ui-bundle.js",
            swagger_css_url=DOCS_ASSETS + "/swagger-ui.css",
            swagger_favicon_url=DOCS_ASSETS + "/favicon-32x32.png",
        )
