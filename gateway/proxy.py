"""The catch-all /api/v1 route: forward to the owning service and hand its answer back unchanged.

The service's status, body and headers pass through (so its problem+json errors reach the client
as they are); the gateway only answers itself for unknown paths, oversized bodies and services
that cannot be reached.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from gateway.auth import ANONYMOUS_ADMIN, Principal
from gateway.authz import OwnerCache, filter_items, narrow
from gateway.routes import API_PREFIX, GATEWAY, resolve
from gateway.upstream import (
    UpstreamError,
    Upstreams,
    classify,
    current_request_id,
    default_timeout,
    downstream_response_headers,
    upstream_problem,
    upstream_request_headers,
)
from servicekit.problems import Problem

log = logging.getLogger("gateway.proxy")

PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
EVENT_STREAM = "text/event-stream"

router = APIRouter()


def request_principal(request: Request) -> Principal:
    # Set by GatewayAuthMiddleware; with authentication off every caller acts as an admin.
    return getattr(request.state, "principal", None) or ANONYMOUS_ADMIN


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refusing anything over ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        "Content too large",
        f"The request body exceeds {limit} bytes.",
        code="payload_too_large",
        max_bytes=limit,
    )


@router.api_route(API_PREFIX + "/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
async def forward(request: Request) -> Response:
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    public_path = raw_path.split(b"?", 1)[0].decode("latin-1")
    resolved = resolve(public_path)
    if resolved is None:
        raise Problem(404, "Not found", f"No API resource at {request.url.path}.", code="not_found")
    if resolved.service == GATEWAY:
        # Gateway-owned views have their own routes (GET only); anything reaching here is off them.
        if request.method == "GET":
            raise Problem(404, "Not found", f"No API resource at {request.url.path}.", code="not_found")
        raise Problem(405, "Method not allowed", code="method_not_allowed", headers={"Allow": "GET"})

    upstreams: Upstreams = request.app.state.upstreams
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    owners: OwnerCache = request.app.state.owners
    narrowed = await narrow(
        request_principal(request),
        request.method,
        public_path,
        request.scope.get("query_string", b""),
        body,
        upstreams=upstreams,
        owners=owners,
    )
    headers = upstream_request_headers(
        request.headers.items(),
        request_id=current_request_id(),
        client_host=request.client.host if request.client else None,
        scheme=request.url.scheme,
    )
    wants_stream = EVENT_STREAM in request.headers.get("accept", "")
    timeout = default_timeout(upstreams.settings)
    if resolved.upstream_path.endswith("/bulk"):
        timeout = default_timeout(upstreams.settings, upstreams.settings.bulk_timeout_s)
    if wants_stream:
        # An event stream stays open indefinitely; only connecting is bounded.
        timeout = httpx.Timeout(None, connect=timeout.connect, pool=timeout.pool)
    try:
        upstream = await upstreams.send(
            resolved.service,
            request.method,
            resolved.upstream_path,
            query=narrowed.query,
            headers=headers,
            content=body or None,
            timeouts=timeout,
            stream=True,
        )
    except UpstreamError as exc:
        return upstream_problem(exc)

    base = upstreams.base_url(resolved.service)
    is_head = request.method == "HEAD"
    out_headers = downstream_response_headers(upstream.headers.raw, upstream_base=base, keep_content_length=is_head)

    if upstream.headers.get("content-type", "").startswith(EVENT_STREAM):
        streamed = StreamingResponse(
            _relay(upstream, resolved.service),
            status_code=upstream.status_code,
            background=BackgroundTask(upstream.aclose),
        )
        streamed.raw_headers.extend(out_headers)
        return streamed

    try:
        content = await upstream.aread()
    except httpx.TransportError as exc:
        return upstream_problem(UpstreamError(resolved.service, classify(exc)[0]))
    finally:
        await upstream.aclose()

    if narrowed.owner_filter is not None and upstream.status_code == 200 and not is_head:
        content = filter_items(content, narrowed.owner_filter)
    response = Response(content=b"" if is_head else content, status_code=upstream.status_code)
    if is_head:
        # Keep the length of the body a GET would return instead of the empty HEAD body's.
        response.raw_headers = [h for h in response.raw_headers if h[0] != b"content-length"]
    response.raw_headers.extend(out_headers)
    return response


async def _relay(upstream: httpx.Response, service: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:
        # Headers are already sent: all the gateway can do is end the stream; the client reconnects.
        log.warning("upstream stream ended", extra={"upstream": service, "error": type(exc).__name__})
    finally:
        await upstream.aclose()
