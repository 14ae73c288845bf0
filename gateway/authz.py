"""Object-level authorization (OWASP API1): agents reach only their own customers, managers their team's.

The role check (gateway.auth) says *whether* a caller may use a route; this module narrows *which
objects*, following the route's Scope in gateway.routes.PERMISSIONS. A customer that is not theirs
answers 404 exactly like a customer that does not exist, so ids cannot be probed. Lists are forced to
``?owner=`` and their items are checked again, so a service that ignored the filter still leaks nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from gateway.auth import Principal
from gateway.routes import API_PREFIX, Permission, Resolved, Scope, permission_for, resolve
from gateway.upstream import UpstreamError, UpstreamResponse, Upstreams, current_request_id, default_timeout
from gateway.upstream_headers import upstream_request_headers
from servicekit.problems import Problem, not_found

log = logging.getLogger("gateway.authz")


@dataclass(frozen=True)
class Narrowed:
    """What the proxy sends instead: the (possibly rewritten) query, and owners every list item must have."""

    query: bytes
    owner_filter: frozenset[str] | None = None


# Where a customer's owner is read: the customer service's GET /customers/{id} (the authority on owners).
OWNER_LOOKUP = ("customer", "/customers/{id}")


class OwnerCache:
    """customer id -> owner, asked of the customer service; kept ``ttl_s`` seconds (0, the default: not kept).

    Any ttl lets a previous owner keep access for that long after a reassignment, on every gateway
    replica (each has its own cache), so the default asks the customer service every time.
    """

    def __init__(self, upstreams: Upstreams, ttl_s: float, max_size: int = 50_000) -> None:
        self.upstreams = upstreams
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def owner_of(self, customer_id: str) -> tuple[bool, str | None]:
        """(exists, owner). Raises Problem 503/504 when the customer service cannot answer."""
        now = time.monotonic()
        cached = self._cache.get(customer_id) if self.ttl_s > 0 else None
        if cached is not None and cached[1] > now:
            return True, cached[0]
        service, path = OWNER_LOOKUP
        body = await fetch_json(self.upstreams, service, path.replace("{id}", quote(customer_id, safe="")))
        if body is None:
            return False, None
        owner = body.get("owner")
        if self.ttl_s <= 0:
            return True, owner
        if len(self._cache) >= self.max_size:
            self._cache.clear()
        self._cache[customer_id] = (owner, now + self.ttl_s)
        return True, owner


async def fetch_json(upstreams: Upstreams, service: str, path: str) -> dict[str, Any] | None:
    """GET a service's resource for an access decision: its JSON object, or None if it does not exist."""
    headers = upstream_request_headers([("accept", "application/json")], request_id=current_request_id())
    timeout = default_timeout(upstreams.settings, upstreams.settings.view360_timeout_s)
    try:
        response = await upstreams.send(service, "GET", path, headers=headers, timeouts=timeout)
    except UpstreamError as exc:
        status = 504 if exc.kind == "timeout" else 503
        raise Problem(
            status,
            "Service unavailable",
            "Access to this resource cannot be checked right now; try again shortly.",
            code="authorization_unavailable",
            headers={"Retry-After": "1"},
        ) from exc
    if response.status_code in (404, 410):
        return None
    if response.status_code in (400, 422):
        # The id itself is invalid (e.g. holds a NUL character): the caller's error, not an outage.
        raise _invalid_lookup(response)
    if response.status_code != 200:
        log.warning("access check lookup failed", extra={"upstream": service, "status_code": response.status_code})
        raise Problem(
            503,
            "Service unavailable",
            "Access to this resource cannot be checked right now.",
            code="authorization_unavailable",
            headers={"Retry-After": "1"},
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Problem(502, "Bad gateway", "Access to this resource cannot be checked.", code="upstream_error")
    return body


def _invalid_lookup(response: UpstreamResponse) -> Problem:
    """The service's own validation problem, handed on as the proxy would hand it on."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    kind = str(body.get("type", ""))
    errors = body.get("errors")
    return Problem(
        response.status_code,
        str(body.get("title") or "Invalid request"),
        body.get("detail") if isinstance(body.get("detail"), str) else None,
        code=kind.rsplit(":", 1)[-1] if kind.startswith("urn:crm:problem:") else "validation",
        errors=errors if isinstance(errors, list) else None,
    )


def _not_found(what: str = "resource") -> Problem:
    # Same answer as for an id that does not exist: a caller cannot tell the two apart.
    return not_found(what, title="Not found", detail=f"No such {what} among the customers you may see.")


async def check_customer(principal: Principal, owners: OwnerCache, customer_id: str) -> None:
    exists, owner = await owners.owner_of(customer_id)
    if not exists or owner not in principal.owners:
        raise _not_found("customer")


async def narrow(
    principal: Principal,
    method: str,
    path: str,
    query: bytes,
    body: bytes,
    *,
    upstreams: Upstreams,
    owners: OwnerCache,
    rule: Permission | None = None,
) -> Narrowed:
    """Apply the route's Scope for an owner-scoped caller; raises Problem 403/404 when it does not fit."""
    if not principal.owner_scoped:
        return Narrowed(query)
    rule = rule or permission_for(method, path)
    if rule is None:
        # gateway.auth already refused unlisted requests of non-admin roles; this is a second lock.
        raise Problem(403, "Forbidden", "No permission covers this request for your role.", code="forbidden")
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    match rule.scope:
        case Scope.UNSCOPED | Scope.OWNER_STREAM:
            # A stream is narrowed event by event as it is relayed (gateway.sse_filter, gateway.proxy).
            return Narrowed(query)
        case Scope.CUSTOMER_PATH:
            await check_customer(principal, owners, unquote(segments[1]))
            return Narrowed(query)
        case Scope.OWNER_LIST:
            return _force_owner(principal, query)
        case Scope.CUSTOMER_QUERY | Scope.CUSTOMER_OR_OWNER:
            params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            customer_ids = [v for k, v in params if k == "customer_id"]
            if not customer_ids and rule.scope == Scope.CUSTOMER_OR_OWNER:
                # Every item carries its customer's owner and is checked again (filter_items).
                return _force_owner(principal, query)
            if not customer_ids:
                raise Problem(
                    403,
                    "Forbidden",
                    "Your role may list these only for one of your customers: add ?customer_id=.",
                    code="forbidden",
                )
            for customer_id in customer_ids:
                await check_customer(principal, owners, customer_id)
            return Narrowed(query)
        case Scope.BODY_CUSTOMER:
            customer_id = _json_field(body, "customer_id")
            if customer_id is not None:
                await check_customer(principal, owners, customer_id)
            # Without one, the service rejects the body as invalid; nothing is written.
            return Narrowed(query)
        case Scope.BODY_OWNER:
            owner = _json_field(body, "owner")
            if owner not in principal.owners:
                raise Problem(
                    403,
                    "Forbidden",
                    "Set owner to yourself" + (" or a member of your team." if principal.role == "manager" else "."),
                    code="forbidden",
                    errors=[{"field": "owner", "message": "must be one of the owners you act for"}],
                )
            return Narrowed(query)
        case Scope.RESOURCE:
            # Access follows the resource's customer and that customer's *current* owner, never the
            # owner copied onto the resource: a copy lags (or never follows) a reassignment, and a
            # previous owner would keep access to the customer's alerts and tasks through it.
            lookup = resource_lookup(path)
            if lookup is None:
                raise _not_found()
            resource = await fetch_json(upstreams, lookup.service, lookup.upstream_path)
            customer_id = resource.get("customer_id") if resource is not None else None
            if not isinstance(customer_id, str):
                raise _not_found()
            await check_customer(principal, owners, customer_id)
            return Narrowed(query)
    raise AssertionError(f"unhandled scope {rule.scope}")  # pragma: no cover


def resource_lookup(path: str) -> Resolved | None:
    """Where a RESOURCE-scoped path's object is read for the decision: GET /{collection}/{id} of its service."""
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    if len(segments) < 2:
        return None
    return resolve(f"{API_PREFIX}/{segments[0]}/{segments[1]}")


def _force_owner(principal: Principal, query: bytes) -> Narrowed:
    params = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    asked = [v for k, v in params if k == "owner"]
    if any(owner not in principal.owners for owner in asked):
        raise Problem(
            403,
            "Forbidden",
            "You may list only your own" + (" or your team's" if principal.role == "manager" else "") + " records.",
            code="forbidden",
            errors=[{"field": "query.owner", "message": "not an owner you act for"}],
        )
    if not asked:
        params += [("owner", owner) for owner in sorted(principal.owners)]
    return Narrowed(urlencode(params).encode("latin-1"), owner_filter=principal.owners)


def _json_field(body: bytes, name: str) -> Any:
    # json.loads like FastAPI does, so a duplicated key resolves to the same value on both sides.
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return None
    return document.get(name) if isinstance(document, dict) else None


def filter_items(content: bytes, owners: frozenset[str]) -> bytes:
    """Drop list items owned by someone else (a service that ignored ?owner=); logs when it had to."""
    try:
        document = json.loads(content)
    except ValueError:
        return content
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return content
    items = document["items"]
    kept = [item for item in items if isinstance(item, dict) and item.get("owner") in owners]
    if len(kept) == len(items):
        return content
    log.warning("upstream list ignored the owner filter", extra={"dropped": len(items) - len(kept)})
    document["items"] = kept
    if isinstance(document.get("total"), int):
        document["total"] = max(len(kept), document["total"] - (len(items) - len(kept)))
    return json.dumps(document).encode()
