"""Talking to the services: one pooled keep-alive client, header hygiene, and failure mapping.

Used by the proxy, the 360 view and readiness alike, so retries, timeouts and metrics behave the
same wherever the gateway calls a service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Literal

import httpx
from starlette.responses import Response

from gateway.metrics import UPSTREAM_LATENCY
from gateway.routes import API_PREFIX
from gateway.settings import GatewaySettings
from servicekit.problems import problem_response

log = logging.getLogger("gateway.upstream")

# Methods safe to send twice: only these are retried, and only when the request cannot have
# reached the service's handler (connect failed, or a pooled connection was already dead).
RETRYABLE_METHODS = frozenset({"GET", "HEAD"})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers that carry meaning to a service. Everything else (Authorization, cookies,
# hop-by-hop headers) stays at the edge: the external token must not travel inside the system.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        "content-type",
        "accept",
        "accept-language",
        "if-match",
        "if-none-match",
        "idempotency-key",
        "last-event-id",
        "prefer",
    }
)
# Response headers the gateway's own server sets (or recomputes after httpx decoded the body).
_GATEWAY_OWNED = frozenset({"content-length", "content-encoding", "date", "server", "x-request-id"})

Failure = Literal["unavailable", "timeout", "bad_gateway"]

_PROBLEMS: dict[Failure, tuple[int, str, str, str]] = {
    "unavailable": (
        503,
        "Service unavailable",
        "The {service} service is unavailable; try again shortly.",
        "upstream_unavailable",
    ),
    "timeout": (504, "Gateway timeout", "The {service} service did not answer in time.", "upstream_timeout"),
    "bad_gateway": (502, "Bad gateway", "The {service} service did not send a valid response.", "upstream_error"),
}


class UpstreamError(Exception):
    """A service could not be reached or did not answer; carries no internal address."""

    def __init__(self, service: str, kind: Failure) -> None:
        super().__init__(f"{service}: {kind}")
        self.service = service
        self.kind = kind


def classify(exc: httpx.TransportError) -> tuple[Failure, bool]:
    """(failure kind, whether an idempotent request may be retried)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "unavailable", True
    if isinstance(exc, httpx.PoolTimeout):
        # Our own pool is exhausted: the service is fine, retrying would only queue longer.
        return "unavailable", False
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", False
    if isinstance(exc, httpx.RemoteProtocolError):
        # Typically a keep-alive connection the service closed just as we reused it.
        return "bad_gateway", True
    return "bad_gateway", False


def upstream_problem(exc: UpstreamError) -> Response:
    status, title, detail, code = _PROBLEMS[exc.kind]
    headers = {"Retry-After": "1"} if exc.kind == "unavailable" else None
    return problem_response(
        status, title, detail.format(service=exc.service), code=code, service=exc.service, headers=headers
    )


def upstream_request_headers(
    incoming: Iterable[tuple[str, str]], *, request_id: str, client_host: str | None = None, scheme: str = "http"
) -> list[tuple[str, str]]:
    """Headers for a call into a service, built from an allow-list of the client's headers."""
    incoming = [(name.lower(), value) for name, value in incoming]
    out = [(name, value) for name, value in incoming if name in FORWARDED_REQUEST_HEADERS]
    out.append(("x-request-id", request_id))
    forwarded_for = [value for name, value in incoming if name == "x-forwarded-for"]
    if client_host:
        forwarded_for.append(client_host)
    if forwarded_for:
        out.append(("x-forwarded-for", ", ".join(forwarded_for)))
    out.append(("x-forwarded-proto", scheme))
    # Bodies are small and local; compression would only cost CPU on both sides.
    out.append(("accept-encoding", "identity"))
    return out


def public_location(location: str, upstream_base: str) -> str:
    """Rewrite a service's Location (its own path or address) into the public /api/v1 path."""
    if location == upstream_base or location.startswith(upstream_base + "/"):
        location = location[len(upstream_base) :] or "/"
    if location.startswith("/") and not location.startswith("//") and not location.startswith(API_PREFIX + "/"):
        return API_PREFIX + location
    return location


def downstream_response_headers(
    raw: Iterable[tuple[bytes, bytes]], *, upstream_base: str, keep_content_length: bool = False
) -> list[tuple[bytes, bytes]]:
    """The service's response headers minus hop-by-hop and those the gateway sets itself."""
    raw = [(name.lower(), value) for name, value in raw]
    # "Connection: foo" makes header foo hop-by-hop too (RFC 9110 7.6.1).
    listed = {
        token.strip().decode("latin-1")
        for name, value in raw
        if name == b"connection"
        for token in value.lower().split(b",")
    }
    drop = HOP_BY_HOP | _GATEWAY_OWNED | listed
    if keep_content_length:
        drop = drop - {"content-length"}
    out: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        key = name.decode("latin-1")
        if key in drop:
            continue
        if key == "location":
            value = public_location(value.decode("latin-1"), upstream_base).encode("latin-1")
        out.append((name, value))
    return out


def build_client(settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry_s,
    )
    return httpx.AsyncClient(
        timeout=default_timeout(settings),
        # A custom transport (tests) brings its own pool; otherwise the limits above apply.
        transport=transport or httpx.AsyncHTTPTransport(limits=limits),
        follow_redirects=False,
        # An HTTP(S)_PROXY in the environment must not end up between the gateway and the services.
        trust_env=False,
    )


def default_timeout(settings: GatewaySettings, total: float | None = None) -> httpx.Timeout:
    total = settings.timeout_s if total is None else total
    connect = min(settings.connect_timeout_s, total)
    return httpx.Timeout(total, connect=connect, pool=connect)


class Upstreams:
    """The services by name, reached through one shared connection pool."""

    def __init__(self, settings: GatewaySettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.urls = settings.service_urls()
        self.client = build_client(settings, transport)

    async def aclose(self) -> None:
        await self.client.aclose()

    def base_url(self, service: str) -> str:
        return self.urls[service]

    async def send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        query: bytes | str = b"",
        headers: Iterable[tuple[str, str]] = (),
        content: bytes | None = None,
        timeouts: httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request to ``service``; raise UpstreamError instead of transport errors.

        With ``stream=True`` only the headers have been read; the caller must close the response.
        """
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        url = self.urls[service] + path + (f"?{query}" if query else "")
        request = self.client.build_request(
            method, url, headers=list(headers), content=content, timeout=timeouts or default_timeout(self.settings)
        )
        attempts = 2 if method in RETRYABLE_METHODS else 1
        started = time.perf_counter()
        attempt = 1
        while True:
            try:
                response = await self.client.send(request, stream=stream)
            except httpx.TransportError as exc:
                kind, retryable = classify(exc)
                if retryable and attempt < attempts:
                    log.info("retrying upstream request", extra={"upstream": service, "error": type(exc).__name__})
                    attempt += 1
                    continue
                UPSTREAM_LATENCY.labels(service, method, kind).observe(time.perf_counter() - started)
                log.warning(
                    "upstream request failed",
                    extra={
                        "upstream": service,
                        "method": method,
                        "path": path,
                        "error": type(exc).__name__,
                        "attempts": attempt,
                    },
                )
                raise UpstreamError(service, kind) from exc
            UPSTREAM_LATENCY.labels(service, method, f"{response.status_code // 100}xx").observe(
                time.perf_counter() - started
            )
            return response
