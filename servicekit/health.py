"""/health/live (the process answers) and /health/ready (every dependency it needs is there).

Liveness never looks at a dependency: a broker or database outage must make a process unready (taken
out of rotation), never dead (restarted in a loop, which would not bring the broker back). See docs/health.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from servicekit.metrics import record_readiness
from servicekit.migrations import current_revision


def health_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        state = request.app.state
        checks: dict[str, dict[str, Any]] = {}
        try:
            await asyncio.wait_for(state.database.ping(), 2)
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        if checks["database"]["ok"]:
            current = await current_revision(state.database, state.spec.name)
            head = getattr(state, "migration_head", None)
            checks["migrations"] = {"ok": current == head, "current": current, "head": head}
        if state.relay is not None:
            checks["kafka_producer"] = {"ok": state.relay.connected}
        if state.consumer is not None:
            checks["kafka_consumer"] = {"ok": state.consumer.connected}
        ok = all(c["ok"] for c in checks.values())
        record_readiness(state.spec.name, ok, checks)
        body = {"status": "ready" if ok else "unavailable", "service": state.spec.name, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})

    return router
