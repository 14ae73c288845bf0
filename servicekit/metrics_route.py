"""GET /metrics in Prometheus text format, behind a bearer token.

Metrics reveal traffic, routes, error rates and queue depths, so they are not public: with
CRM_METRICS_TOKEN set, a scrape must send ``Authorization: Bearer <token>`` (401 otherwise). Unset,
/metrics stays open for local runs, except in production mode (CRM_PRODUCTION=true), where it
answers 403 to everyone until a token is configured (fail closed).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.problems import problem_response
from servicekit.settings import PlatformSettings


class MetricsSettings(BaseSettings):
    """CRM_METRICS_TOKEN, read by every process (gateway and services)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    # Bearer token Prometheus sends to read /metrics; empty: /metrics is open (refused in production mode).
    metrics_token: str = ""


def production_mode() -> bool:
    return PlatformSettings().production


def metrics_router(settings: MetricsSettings | None = None) -> APIRouter:
    settings = settings or MetricsSettings()
    token = settings.metrics_token.encode()
    closed = not token and production_mode()
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if closed:
            return problem_response(
                403, "Forbidden", "Metrics are off until CRM_METRICS_TOKEN is set.", code="metrics_disabled"
            )
        if token:
            scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token):
                return problem_response(
                    401,
                    "Unauthorized",
                    "Send the metrics token: 'Authorization: Bearer <CRM_METRICS_TOKEN>'.",
                    code="unauthorized",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
