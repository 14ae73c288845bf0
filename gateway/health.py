"""/health/live (the gateway process answers) and /health/ready (every service it fronts is ready).

servicekit.health checks a database; the gateway has none, so its readiness is the services'.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.upstream import UpstreamError, Upstreams, current_request_id, default_timeout
from gateway.upstream_headers import upstream_request_headers
from servicekit.metrics import record_readiness


async def check_service(upstreams: Upstreams, service: str, timeout_s: float) -> dict[str, Any]:
    headers = upstream_request_headers([("accept", "application/json")], request_id=current_request_id())
    try:
        response = await upstreams.send(
            service,
            "GET",
            "/health/ready",
            headers=headers,
            timeouts=default_timeout(upstreams.settings, timeout_s),
        )
    except UpstreamError as exc:
        return {"ok": False, "error": exc.kind}
    check: dict[str, Any] = {"ok": response.status_code == 200, "status_code": response.status_code}
    try:
        body = response.json()
    except ValueError:
        return check
    # The service's own dependency checks (database, migrations, Kafka) say *why* it is not ready.
    if isinstance(body, dict) and isinstance(body.get("checks"), dict):
        check["checks"] = body["checks"]
    return check


def health_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        upstreams: Upstreams = request.app.state.upstreams
        timeout_s = upstreams.settings.ready_timeout_s
        services = list(upstreams.urls)
        results = await asyncio.gather(*(check_service(upstreams, s, timeout_s) for s in services))
        checks = dict(zip(services, results, strict=True))
        ok = all(c["ok"] for c in checks.values())
        # One crm_ready_check series per fronted service: the gateway's view of each service's state.
        record_readiness("gateway", ok, checks)
        body = {"status": "ready" if ok else "unavailable", "service": "gateway", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})

    return router
