"""Bulk routes are limited by rows per second per caller, not by requests.

A request to a bulk route (``POST /customers/bulk``, ``/customers/status/bulk``, ``/interactions/bulk``)
costs one token of the caller's request quota like any other, and as many tokens of its row quota as it
carries rows (``GATEWAY_BULK_ROWS_PER_S``, by role; shared by every replica through the same buckets).
An import of 5,000-row batches and one of 50-row batches move at the same rows per second; over the
quota the answer is 429 with Retry-After, the seconds until the whole batch fits. Rows are counted from
the JSON body (``rows``); a body that is not such a document costs one row and is refused by the service.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import raw_path
from gateway.proxy import read_body, scope_principal
from gateway.ratelimit import Quota, SharedBuckets, retry_after
from gateway.routes import API_PREFIX
from servicekit.problems import Problem, problem_response

BULK_PATHS = frozenset(
    f"{API_PREFIX}/{path}" for path in ("customers/bulk", "customers/status/bulk", "interactions/bulk")
)
MAX_ROWS_PER_REQUEST = 5000  # the services' limit: a bucket holds at least one full request


def count_rows(body: bytes) -> int:
    """Rows of a bulk body ``{"rows": [...]}``; 1 for anything else (the service answers it with a 422)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 1
    rows = document.get("rows") if isinstance(document, dict) else None
    return max(1, len(rows)) if isinstance(rows, list) else 1


class RowLimiter:
    """Row quotas per caller by role, in the shared buckets (key ``rows:<caller>``)."""

    def __init__(self, buckets: SharedBuckets, rates: dict[str, float], burst_factor: float) -> None:
        self.buckets = buckets
        self.quotas = {role: self._quota(rate, burst_factor) for role, rate in rates.items()}
        self.default = self._quota(min(rates.values(), default=1000.0), burst_factor)

    @staticmethod
    def _quota(rate: float, burst_factor: float) -> Quota:
        quota = Quota.of(rate, burst_factor)
        return Quota(quota.rate, max(quota.capacity, float(MAX_ROWS_PER_REQUEST)))

    def quota(self, role: str) -> Quota:
        return self.quotas.get(role, self.default)

    async def take(self, key: str, role: str, rows: int) -> float:
        """0 if the rows may pass now, else the seconds until they may."""
        return await self.buckets.claim_all(f"rows:{key}", self.quota(role), rows)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class BulkRowLimitMiddleware:
    """Pure ASGI, inside authentication (the caller is known): the row quota of bulk requests."""

    def __init__(self, app: ASGIApp, limiter: RowLimiter, max_body_bytes: int, enabled: bool = True) -> None:
        self.app = app
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or raw_path(scope).rstrip("/") not in BULK_PATHS
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except Problem as problem:
            await _problem(problem)(scope, receive, send)
            return
        except ClientDisconnect:
            return
        principal = scope_principal(scope)
        wait = await self.limiter.take(principal.rate_key, principal.role, count_rows(body))
        if wait > 0:
            detail = (
                f"Row limit for the role {principal.role!r} on bulk routes exceeded; retry after {retry_after(wait)} s."
            )
            response = problem_response(
                429, "Too many requests", detail, code="rate_limited", headers={"Retry-After": retry_after(wait)}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body), send)


def _problem(problem: Problem) -> Any:
    return problem_response(
        problem.status,
        problem.title,
        problem.detail,
        code=problem.code,
        errors=problem.errors,
        headers=problem.headers,
        **(problem.extra or {}),
    )
