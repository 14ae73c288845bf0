"""Talking to the services: one way to call them (``Upstreams.send``), header hygiene, and failure mapping.

Used by the proxy, the 360 view and readiness alike, so retries, timeouts and metrics behave the
same wherever the gateway calls a service.

Behind ``Upstreams.send`` sit two HTTP clients, each with one pooled keep-alive session, on purpose:

- aiohttp carries the requests of a running gateway (``GATEWAY_UPSTREAM_CLIENT=aiohttp``, the default):
  under concurrency it answers markedly faster than ``httpx.AsyncClient`` (encode/httpx#3215), which
  ``bench/gateway_overhead.py`` measures side by side (figures in docs/performance/). Its answers are
  wrapped in ``AiohttpResponse`` (the part of ``httpx.Response`` the gateway reads, streaming included)
  and its failures become the httpx exceptions ``classify`` knows, so both clients fail alike.
- httpx is the seam the tests use: an httpx transport (``ASGITransport``, ``MockTransport``) puts the
  services in the test's process, and aiohttp has nothing like it, so ``Upstreams`` built with a
  transport use httpx. ``GATEWAY_UPSTREAM_CLIENT=httpx`` selects it in a running gateway too. The JWKS
  fetch (``gateway/jwks.py``) also uses httpx: one call per key rotation, off the request path.

httpx alone would give up the proxy's measured speed; aiohttp alone would take away the in-process
transport every gateway test runs on. Both relay event streams chunk by chunk (``aiter_raw``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import aiohttp
import httpx
import orjson
import yarl
from starlette.responses import Response

from gateway.auth import current_principal
from gateway.metrics import UPSTREAM_LATENCY
from gateway.routes import API_PREFIX
from gateway.settings import GatewaySettings
from servicekit import tracing
from servicekit.auth import InternalAuthSettings, internal_headers
from servicekit.context import correlation_id, new_request_id
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


def current_request_id() -> str:
    # Set by RequestContextMiddleware; the fallback only matters if the app is mounted without it.
    return correlation_id.get() or new_request_id()


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


class AiohttpResponse:
    """An aiohttp response with the part of httpx.Response's interface the gateway uses.

    Transport errors surface as the httpx exceptions ``classify`` knows, so both clients fail alike.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = httpx.Headers(list(response.raw_headers))
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("body not read; call aread() first")
        return self._content

    def json(self) -> Any:
        return orjson.loads(self.content)

    async def aread(self) -> bytes:
        if self._content is None:
            try:
                self._content = await self._response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _as_httpx_error(exc) from exc
        return self._content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx_error(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


def _as_httpx_error(exc: BaseException) -> httpx.TransportError:
    """The httpx exception for an aiohttp failure (see ``classify``)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc))
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc))
    return httpx.ReadError(f"{type(exc).__name__}: {exc}")


_CLIENT_TIMEOUTS: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}


def _aiohttp_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    # Memoized: the gateway uses a handful of budgets, and building one per request showed in profiles.
    key = (timeout.pool, timeout.connect, timeout.read)
    cached = _CLIENT_TIMEOUTS.get(key)
    if cached is None:
        # httpx has no overall deadline either: the read budget applies to each read, as with httpx.
        cached = _CLIENT_TIMEOUTS[key] = aiohttp.ClientTimeout(
            total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read
        )
    return cached


class Upstreams:
    """The services by name, reached through one shared connection pool (aiohttp's, or httpx's when a
    transport is given or ``upstream_client`` is "httpx")."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        internal: InternalAuthSettings | None = None,
    ) -> None:
        self.settings = settings
        self.urls = settings.service_urls()
        self.client = build_client(settings, transport)
        self.internal = internal or InternalAuthSettings()
        # aiohttp measured faster than httpx under concurrency (bench/gateway_overhead.py); a custom
        # httpx transport (tests) keeps httpx.
        self.use_aiohttp = settings.upstream_client == "aiohttp" and transport is None
        self._session: aiohttp.ClientSession | None = None

    def _aiohttp(self) -> aiohttp.ClientSession:
        # Created on first use: a session needs the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections,
                keepalive_timeout=self.settings.keepalive_expiry_s,
                use_dns_cache=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # we ask for identity; never decode what we pass through
                trust_env=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
                # One session serves every caller: a service's Set-Cookie must never ride along on
                # someone else's request (and skipping the jar saves work per request).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._session is not None:
            await self._session.close()

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
    ) -> Any:
        """Send one request to ``service``; raise UpstreamError instead of transport errors.

        The answer is an httpx.Response or an AiohttpResponse (the same attributes).

        With ``stream=True`` only the headers have been read; the caller must close the response.
        """
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        url = self.urls[service] + path + (f"?{query}" if query else "")
        # Every call carries the signed internal credential (over method, path, query and body) and, for
        # audit, whom it is made for.
        principal = current_principal.get()
        principal_header = principal.header if principal else "service:gateway"
        timeout = timeouts or default_timeout(self.settings)
        attempts = 2 if method in RETRYABLE_METHODS else 1
        started = time.perf_counter()
        attempt = 1
        while True:
            # Signed per attempt: a service accepts each signature (its nonce) only once.
            signed = internal_headers(
                method, path, query=query, body=content or b"", principal=principal_header, settings=self.internal
            )
            # The trace context of the gateway's server span, so the service's span is its child (tracing on).
            all_headers = [*headers, *signed.items(), *tracing.current_context_headers().items()]
            try:
                if not self.use_aiohttp:
                    request = self.client.build_request(
                        method, url, headers=all_headers, content=content, timeout=timeout
                    )
                    response: Any = await self.client.send(request, stream=stream)
                else:
                    response = await self._send_aiohttp(method, url, all_headers, content, timeout, stream)
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

    async def _send_aiohttp(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        budget: httpx.Timeout,
        stream: bool,
    ) -> AiohttpResponse:
        try:
            raw = await self._aiohttp().request(
                method,
                yarl.URL(url, encoded=True),  # the path and query exactly as the client sent them
                headers=headers,
                data=content,
                timeout=_aiohttp_timeout(budget),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _as_httpx_error(exc) from exc
        response = AiohttpResponse(raw)
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response
