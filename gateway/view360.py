"""GET /api/v1/customers/{id}/360: profile, scores, recent interactions, open complaints, alerts, tasks and
loyalty points.

The parts are fetched in parallel, each with its own short budget. A part whose service fails is
reported under ``unavailable`` (and is null) instead of failing the whole view, so a retention
manager still sees the profile when, say, scoring is down.

Each part needs the permission its own route needs (gateway.routes.PERMISSIONS for GET /api/v1 + the
part's path): the view is no side door to data a caller could not read directly. A part the caller may
not read is not fetched at all; it is null and listed under ``omitted`` with the permission it needs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.authz import check_customer
from gateway.proxy import request_principal
from gateway.routes import API_PREFIX, permission_for
from gateway.upstream import UpstreamError, Upstreams, current_request_id, default_timeout
from gateway.upstream_headers import downstream_response_headers, upstream_request_headers
from servicekit.problems import problem_response

router = APIRouter(tags=["customer-360"])


@dataclass(frozen=True)
class Part:
    name: str
    service: str
    path: str  # "{id}" is replaced by the percent-encoded customer id
    query: tuple[tuple[str, str], ...] = ()
    # A 404 from a per-customer path means "nothing yet" (an empty part); from a list path it means
    # the service does not offer the route (yet), which is reported as unavailable.
    list_route: bool = False


def parts(customer_id: str, interactions_limit: int) -> list[tuple[Part, str, str]]:
    """(part, upstream path, query string) for each piece of the view."""
    table = (
        Part("profile", "customer", "/customers/{id}"),
        Part("scores", "scoring", "/customers/{id}/scores"),
        Part("interactions", "interaction", "/customers/{id}/interactions", (("limit", str(interactions_limit)),)),
        # Every complaint still being worked on: open, acknowledged, or judged valid but not yet solved.
        Part(
            "complaints",
            "interaction",
            "/complaints",
            (("customer_id", customer_id), ("status", "open"), ("status", "acknowledged"), ("status", "valid")),
            list_route=True,
        ),
        # Every unresolved alert: an acknowledged or snoozed one is still a live risk.
        Part(
            "alerts",
            "retention",
            "/alerts",
            (("customer_id", customer_id), ("status", "open"), ("status", "acknowledged"), ("status", "snoozed")),
            list_route=True,
        ),
        Part("tasks", "retention", "/tasks", (("customer_id", customer_id), ("status", "open")), list_route=True),
        # Loyalty points: balance, member tier and the latest ledger entries (docs/loyalty-points.md).
        Part("points", "customer", "/customers/{id}/points", (("limit", "5"),)),
    )
    encoded = quote(customer_id, safe="")
    return [(p, p.path.replace("{id}", encoded), urlencode(p.query)) for p in table]


def part_permission(path: str) -> str:
    """The permission the part's own public route needs (its path is the service's path under /api/v1)."""
    rule = permission_for("GET", API_PREFIX + path)
    if rule is None:  # pragma: no cover - a part without a public route would be a programming error
        raise AssertionError(f"no permission governs GET {path}")
    return rule.permission


@dataclass
class Fetched:
    part: Part
    status_code: int | None = None
    data: Any = None
    failure: dict[str, Any] | None = None
    raw: tuple[bytes, list[tuple[bytes, bytes]]] | None = None


async def _fetch(upstreams: Upstreams, part: Part, path: str, query: str, headers: list[tuple[str, str]]) -> Fetched:
    timeout = default_timeout(upstreams.settings, upstreams.settings.view360_timeout_s)
    try:
        response = await upstreams.send(part.service, "GET", path, query=query, headers=headers, timeouts=timeout)
    except UpstreamError as exc:
        return Fetched(part, failure={"service": part.service, "reason": exc.kind})
    fetched = Fetched(part, status_code=response.status_code, raw=(response.content, list(response.raw_headers)))
    if response.status_code == 200:
        try:
            fetched.data = response.json()
        except ValueError:
            fetched.failure = {"service": part.service, "reason": "bad_response", "status_code": 200}
    elif response.status_code == 404 and part.list_route:
        fetched.failure = {"service": part.service, "reason": "not_supported", "status_code": 404}
    elif response.status_code == 404:
        # No scores yet / no such customer there yet: an empty part, not a failure.
        fetched.data = None
    else:
        fetched.failure = {"service": part.service, "reason": "error", "status_code": response.status_code}
    return fetched


@router.get(API_PREFIX + "/customers/{customer_id}/360", summary="Customer 360 view")
async def customer_360(customer_id: str, request: Request) -> Response:
    """The customer at a glance; parts whose service is down are null and listed under ``unavailable``,
    parts the caller may not read are null and listed under ``omitted`` (never fetched)."""
    upstreams: Upstreams = request.app.state.upstreams
    principal = request_principal(request)
    if principal.owner_scoped:
        await check_customer(principal, request.app.state.owners, customer_id)
    headers = upstream_request_headers(
        [("accept", "application/json"), *[(k, v) for k, v in request.headers.items() if k == "accept-language"]],
        request_id=current_request_id(),
        client_host=request.client.host if request.client else None,
        scheme=request.url.scheme,
    )
    table = parts(customer_id, upstreams.settings.view360_interactions)
    omitted: dict[str, Any] = {}
    permitted = []
    for part, path, query in table:
        needed = part_permission(path)
        if principal.can(needed):
            permitted.append((part, path, query))
        else:
            omitted[part.name] = {"reason": "not_permitted", "permission": needed}
    results = await asyncio.gather(*(_fetch(upstreams, part, path, query, headers) for part, path, query in permitted))

    profile = results[0]
    if profile.raw is not None and profile.status_code is not None and 400 <= profile.status_code < 500:
        # The customer service decides whether the customer exists (404) or the id is bad (4xx):
        # hand its problem document back as the proxy would.
        content, raw_headers = profile.raw
        response = Response(content=content, status_code=profile.status_code or 500)
        response.raw_headers.extend(
            downstream_response_headers(raw_headers, upstream_base=upstreams.base_url("customer"))
        )
        return response

    body: dict[str, Any] = {"customer_id": customer_id, **dict.fromkeys(omitted)}
    unavailable: dict[str, Any] = {}
    for fetched in results:
        body[fetched.part.name] = fetched.data
        if fetched.failure is not None:
            unavailable[fetched.part.name] = fetched.failure
    if len(unavailable) == len(results):
        # Nothing to show at all: an honest 503 beats an empty 200.
        return problem_response(
            503,
            "Service unavailable",
            "None of the services behind the customer 360 view answered; try again shortly.",
            code="upstream_unavailable",
            headers={"Retry-After": "1"},
            unavailable=unavailable,
        )
    body["complete"] = not unavailable and not omitted
    body["unavailable"] = unavailable
    body["omitted"] = omitted
    return Response(orjson.dumps(body), media_type="application/json")
