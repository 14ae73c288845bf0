"""The /api/v1 proxy: forward to the owning service and hand its answer back unchanged.

The service's status, body and headers pass through (so its problem+json errors reach the client
as they are); the gateway only answers itself for unknown paths, oversized bodies and services
that cannot be reached.

The proxy is plain ASGI, reached through ApiDispatcher, a middleware just inside authentication:
Starlette's route matching, ExceptionMiddleware and FastAPI's endpoint machinery cost more per request
than the proxying itself (py-spy under bench/gateway_overhead.py). Gateway-owned /api/v1 routes (the
360 view, API keys) and everything outside /api/v1 still go through the FastAPI app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import AdmissionControl, admission_policy
from gateway.auth import ANONYMOUS_ADMIN, Principal, raw_path
from gateway.authz import OwnerCache, check_customer, filter_items, narrow
from gateway.routes import API_PREFIX, GATEWAY, Resolved, resolve
from gateway.sse_filter import OwnerStreamFilter
from gateway.upstream import (
    UpstreamError,
    UpstreamResponse,
    Upstreams,
    current_request_id,
    default_timeout,
    stream_timeout,
    upstream_problem,
)
from gateway.upstream_headers import downstream_response_headers, upstream_request_headers
from servicekit.problems import DEFAULT_RETRY_AFTER_S, RETRY_STATUSES, Problem, not_found, render_problem

log = logging.getLogger("gateway.proxy")

PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
EVENT_STREAM = "text/event-stream"
# Work of many rows in one call, besides the imports (`.../bulk`): judging a page of up to 1,000 customers'
# alerts, resolving up to 5,000 references. At a migration's size they can take longer than an ordinary
# request's budget on a busy service, and a 504 would leave the caller unsure what was done.
_BULK_WORK = frozenset({"/alerts/evaluate", "/customers/resolve"})


def takes_bulk_budget(upstream_path: str) -> bool:
    """Whether a request gets GATEWAY_BULK_TIMEOUT_S rather than GATEWAY_TIMEOUT_S."""
    return upstream_path.endswith("/bulk") or upstream_path in _BULK_WORK


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """Stands in for a router match: RequestContextMiddleware labels metrics with ``scope["route"].path``."""

    path: str = API_PREFIX + "/{path:path}"


PROXY_ROUTE = ProxyRoute()


def scope_principal(scope: Scope) -> Principal:
    # Set by GatewayAuthMiddleware; with authentication off every caller acts as an admin.
    return scope.get("state", {}).get("principal") or ANONYMOUS_ADMIN


def request_principal(request: Request) -> Principal:
    return scope_principal(request.scope)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing anything over ``limit`` bytes without reading it all."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise _too_large(limit)
            break
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(body)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content too large",
        f"The request body exceeds {limit} bytes.",
        code="payload_too_large",
        max_bytes=limit,
    )


def no_resource(path: str) -> Problem:
    """The 404 of an /api/v1 path that no route takes."""
    return not_found("API resource", detail=f"No API resource at {path}.", title="Not found")


def off_route(method: str, path: str, resolved: Resolved | None) -> Problem:
    """The answer for an /api/v1 request no service and no gateway route takes."""
    if resolved is not None and resolved.service == GATEWAY:
        # Gateway-owned views have their own routes (GET only); anything reaching here is off them.
        if method == "GET":
            return no_resource(path)
        return Problem(405, "Method not allowed", code="method_not_allowed", headers={"Allow": "GET"})
    if method not in PROXY_METHODS:
        allow = ", ".join(PROXY_METHODS)
        return Problem(405, "Method not allowed", code="method_not_allowed", headers={"Allow": allow})
    return no_resource(path)


class StreamSlots:
    """Open event streams, counted per caller and in total (per gateway process); 429 beyond either cap."""

    def __init__(self, per_principal: int, total: int) -> None:
        self.per_principal = per_principal
        self.total = total
        self.open: dict[str, int] = {}

    @property
    def in_use(self) -> int:
        return sum(self.open.values())

    def acquire(self, key: str) -> StreamSlot:
        held = self.open.get(key, 0)
        if held >= self.per_principal or self.in_use >= self.total:
            mine = held >= self.per_principal
            raise Problem(
                429,
                "Too many event streams",
                f"You hold {held} open event streams; the limit is {self.per_principal}. Close one first."
                if mine
                else "The gateway carries as many event streams as it may; retry shortly.",
                code="too_many_streams",
                headers={"Retry-After": "5" if mine else "2"},
                limit=self.per_principal if mine else self.total,
            )
        self.open[key] = held + 1
        return StreamSlot(self, key)


class StreamSlot:
    def __init__(self, slots: StreamSlots, key: str) -> None:
        self._slots: StreamSlots | None = slots
        self.key = key

    def release(self) -> None:
        # Idempotent: the relay's end and the response's background task both call it.
        slots, self._slots = self._slots, None
        if slots is not None:
            left = slots.open.get(self.key, 0) - 1
            if left > 0:
                slots.open[self.key] = left
            else:
                slots.open.pop(self.key, None)


class Proxy:
    """Forwards one resolved /api/v1 request (pure ASGI) and sends the service's answer back."""

    def __init__(
        self,
        upstreams: Upstreams,
        owners: OwnerCache,
        max_body_bytes: int,
        stream_upstreams: Upstreams | None = None,
        admission: AdmissionControl | None = None,
    ) -> None:
        self.upstreams = upstreams
        # Ordinary requests only: event streams have their own caps (StreamSlots) and pool.
        self.admission = admission or AdmissionControl(admission_policy(upstreams.settings), enabled=False)
        self.owners = owners
        self.max_body_bytes = max_body_bytes
        settings = upstreams.settings
        # Event streams go through their own pool (sized to the stream cap), never the shared one.
        self.stream_upstreams = stream_upstreams or upstreams
        self.streams = StreamSlots(settings.stream_max_per_principal, settings.stream_max_total)
        # Built once: the budgets only change with the settings.
        self.timeout = default_timeout(settings)
        self.bulk_timeout = default_timeout(settings, settings.bulk_timeout_s)
        self.stream_timeout = stream_timeout(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, public_path: str, resolved: Resolved) -> None:
        try:
            response = await self.forward(scope, receive, public_path, resolved)
        except Problem as exc:
            response = render_problem(exc)
        except ClientDisconnect:
            # The client went away before its body arrived (e.g. its own timeout under overload): nobody to
            # answer and nothing forwarded. Not an error: logging a traceback each time cost the gateway CPU
            # exactly when it had least to spare.
            return
        await response(scope, receive, send)

    async def forward(self, scope: Scope, receive: Receive, public_path: str, resolved: Resolved) -> Response:
        method: str = scope["method"]
        upstreams = self.upstreams
        body = await read_body(scope, receive, self.max_body_bytes)
        narrowed = await narrow(
            scope_principal(scope),
            method,
            public_path,
            scope.get("query_string", b""),
            body,
            upstreams=upstreams,
            owners=self.owners,
        )
        incoming = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        client = scope.get("client")
        headers = upstream_request_headers(
            incoming,
            request_id=current_request_id(),
            client_host=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
        )
        accept = next((value for name, value in incoming if name == "accept"), "")
        timeout = self.bulk_timeout if takes_bulk_budget(resolved.upstream_path) else self.timeout
        slot: StreamSlot | None = None
        if EVENT_STREAM in accept:
            slot = self.streams.acquire(scope_principal(scope).rate_key)  # 429 beyond the caps
            upstreams, timeout = self.stream_upstreams, self.stream_timeout
        admitted = slot is None
        if admitted:
            await self.admission.acquire(resolved.service)  # 503 with Retry-After when over the service's limit
        started = time.perf_counter()
        try:
            upstream = await upstreams.send(
                resolved.service,
                method,
                resolved.upstream_path,
                query=narrowed.query,
                headers=headers,
                content=body or None,
                timeouts=timeout,
                stream=True,
            )
        except UpstreamError as exc:
            if slot is not None:
                slot.release()
            if admitted:
                self.admission.release(resolved.service, None)
            return upstream_problem(exc)
        except BaseException:
            if admitted:
                self.admission.release(resolved.service, None)
            raise

        base = upstreams.base_url(resolved.service)
        is_head = method == "HEAD"
        out_headers = downstream_response_headers(upstream.raw_headers, upstream_base=base, keep_content_length=is_head)

        if upstream.headers.get("content-type", "").startswith(EVENT_STREAM):
            if admitted:  # a stream nobody asked for by Accept: its slot ends with its headers
                self.admission.release(resolved.service, time.perf_counter() - started)
            principal = scope_principal(scope)
            # Agents and managers follow only their own (their team's) alerts.
            owned = OwnerStreamFilter(principal.owners) if principal.owner_scoped else None
            streamed = StreamingResponse(
                _relay(upstream, resolved.service, slot, owned, principal, self.owners),
                status_code=upstream.status_code,
                background=BackgroundTask(_close, upstream, slot),
            )
            streamed.raw_headers.extend(out_headers)
            return streamed

        answered: float | None = None
        try:
            content = await upstream.aread()
            answered = time.perf_counter() - started
        except UpstreamError as exc:
            return upstream_problem(exc)
        finally:
            await _close(upstream, slot)
            if admitted:
                self.admission.release(resolved.service, answered)

        if narrowed.owner_filter is not None and upstream.status_code == 200 and not is_head:
            content = filter_items(content, narrowed.owner_filter)
        response = Response(content=b"" if is_head else content, status_code=upstream.status_code)
        if is_head:
            # Keep the length of the body a GET would return instead of the empty HEAD body's.
            response.raw_headers = [h for h in response.raw_headers if h[0] != b"content-length"]
        response.raw_headers.extend(out_headers)
        if upstream.status_code in RETRY_STATUSES and "retry-after" not in upstream.headers:
            # Every 429 and 503 the platform answers says when to come back, whatever the service sent.
            response.raw_headers.append((b"retry-after", str(DEFAULT_RETRY_AFTER_S).encode()))
        return response


async def _close(upstream: UpstreamResponse, slot: StreamSlot | None) -> None:
    if slot is not None:
        slot.release()
    await upstream.aclose()


async def _relay(
    upstream: UpstreamResponse,
    service: str,
    slot: StreamSlot | None = None,
    owned: OwnerStreamFilter | None = None,
    principal: Principal | None = None,
    owners: OwnerCache | None = None,
) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            if owned is None:
                yield chunk
                continue
            for frame, customer_id in owned.feed(chunk):
                if customer_id is not None and principal is not None and owners is not None:
                    try:
                        await check_customer(principal, owners, customer_id)
                    except Problem:
                        continue  # reassigned away (or erased) since the alert was raised
                yield frame
    except UpstreamError as exc:
        # Headers are already sent: all the gateway can do is end the stream; the client reconnects
        # with Last-Event-ID. A silent upstream (stream_read_timeout_s) ends up here too.
        cause = exc.__cause__ or exc
        log.warning("upstream stream ended", extra={"upstream": service, "error": type(cause).__name__})
    finally:
        await _close(upstream, slot)


class ApiDispatcher:
    """Pure ASGI, inside authentication: proxied /api/v1 requests go straight to ``proxy``.

    Requests a gateway route takes (the 360 view, API keys) and everything outside /api/v1 continue to
    the FastAPI app; any other /api/v1 request is answered 404/405 here. Either way the metrics label is
    a route template, never the raw path.
    """

    def __init__(
        self,
        app: ASGIApp,
        proxy: Proxy,
        router: Router,
        documented: Callable[[str], Awaitable[list[str] | None]] | None = None,
    ) -> None:
        self.app = app
        self.proxy = proxy
        self.router = router
        self.documented = documented

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        public_path = raw_path(scope)
        resolved = resolve(public_path)
        method = scope["method"]
        if resolved is not None and resolved.service != GATEWAY and method in PROXY_METHODS:
            scope["route"] = PROXY_ROUTE
            await self.proxy(scope, receive, send, public_path, resolved)
            return
        # Rare paths: the router's own matching decides whether a gateway route takes the request.
        if any(route.matches(scope)[0] is Match.FULL for route in self.router.routes):
            await self.app(scope, receive, send)
            return
        scope["route"] = PROXY_ROUTE
        if method not in PROXY_METHODS and self.documented is not None:
            # OPTIONS and other methods no route takes: Allow lists exactly what the API document lists.
            allowed = await self.documented(public_path)
            if allowed is None:
                problem = no_resource(scope["path"])
            else:
                problem = Problem(
                    405, "Method not allowed", code="method_not_allowed", headers={"Allow": ", ".join(allowed)}
                )
            await render_problem(problem)(scope, receive, send)
            return
        await render_problem(off_route(method, scope["path"], resolved))(scope, receive, send)
