"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids and request metrics."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit import metrics, tracing
from servicekit.context import correlation_id, new_request_id

REQUEST_ID_HEADER = b"x-request-id"


class RequestContextMiddleware:
    """Adopts or creates X-Request-ID (the trace id while tracing is on), exposes it to logs and events,
    echoes it, and times the request."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # Each (method, route, status)'s histogram child, looked up once: prometheus_client's labels()
        # takes a lock and checks every label per call. Bounded: routes are templates, statuses few.
        self._latency: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # While tracing is on the request id is the trace id (the server span is current here), so logs,
        # the X-Request-ID answer and the trace are found by the one id.
        request_id = tracing.current_trace_id()
        if request_id is None:
            for name, value in scope["headers"]:
                if name == REQUEST_ID_HEADER:
                    request_id = value.decode("latin-1")[:200]
                    break
        request_id = request_id or new_request_id()
        token = correlation_id.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], path, status)
            child = self._latency.get(key)
            if child is None:
                child = self._latency[key] = metrics.HTTP_LATENCY.labels(self.service, key[0], path, str(status))
            child.observe(time.perf_counter() - started)
            correlation_id.reset(token)
