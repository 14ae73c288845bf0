"""Talking to the services: one way to call them (``Upstreams.send``), timeouts, and failure mapping.

Used by the proxy, the 360 view, object-level checks, readiness and the merged OpenAPI alike, so retries,
timeouts and metrics behave the same wherever the gateway calls a service. One HTTP client, aiohttp, with
one pooled keep-alive session per ``Upstreams`` (bench/gateway_overhead.py measures what it costs per
request; the figures are in docs/performance/). Its failures are classified once, here, into the three
answers a client sees (503, 504, 502). What headers cross the edge is gateway/upstream_headers.py.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

import aiohttp
import orjson
import yarl
from multidict import CIMultiDictProxy
from starlette.responses import Response

from gateway.auth import current_principal
from gateway.metrics import UPSTREAM_LATENCY
from gateway.settings import GatewaySettings
from servicekit import tracing
from servicekit.auth import InternalAuthSettings, internal_headers
from servicekit.context import correlation_id, new_request_id
from servicekit.problems import problem_response

log = logging.getLogger("gateway.upstream")

# Methods safe to send twice: only these are retried, and only when the request cannot have
# reached the service's handler (connect failed, or a pooled connection was already dead).
RETRYABLE_METHODS = frozenset({"GET", "HEAD"})

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


def classify(exc: BaseException) -> tuple[Failure, bool]:
    """(failure kind, whether an idempotent request may be retried) of a failed call."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        # No connection in time (opening one or waiting for one from the pool), or refused.
        return "unavailable", True
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout", False
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Typically a keep-alive connection the service closed just as we reused it.
        return "bad_gateway", True
    return "bad_gateway", False


def upstream_problem(exc: UpstreamError) -> Response:
    status, title, detail, code = _PROBLEMS[exc.kind]
    headers = {"Retry-After": "1"} if exc.kind == "unavailable" else None
    return problem_response(
        status, title, detail.format(service=exc.service), code=code, service=exc.service, headers=headers
    )


@functools.cache
def _timeout(read: float, connect: float) -> aiohttp.ClientTimeout:
    # Memoized: the gateway uses a handful of budgets, and building one per request showed in profiles.
    # No overall deadline: the read budget applies to each read (for an open stream: each chunk).
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)


def default_timeout(settings: GatewaySettings, total: float | None = None) -> aiohttp.ClientTimeout:
    """The budget of one call: ``total`` (default ``timeout_s``) per read, the connect timeout (at most
    ``total``) to open a connection or to wait for one from the pool."""
    total = settings.timeout_s if total is None else total
    return _timeout(total, min(settings.connect_timeout_s, total))


def stream_timeout(settings: GatewaySettings) -> aiohttp.ClientTimeout:
    """An open event stream is bounded by silence, not length: each read waits at most stream_read_timeout_s."""
    return _timeout(settings.stream_read_timeout_s, min(settings.connect_timeout_s, settings.timeout_s))


class UpstreamResponse:
    """A service's answer. After ``send`` without ``stream`` the body has been read (``content``);
    with ``stream`` only the headers, and the caller reads (``aread``, ``aiter_raw``) and closes it.
    A read that fails raises UpstreamError."""

    def __init__(self, service: str, response: aiohttp.ClientResponse, content: bytes | None = None) -> None:
        self.service = service
        self._response = response
        self.status_code = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.raw_headers = response.raw_headers
        self._content = content

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
                raise UpstreamError(self.service, classify(exc)[0]) from exc
        return self._content

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk as it arrives (event streams), undecoded."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(self.service, classify(exc)[0]) from exc

    async def aclose(self) -> None:
        self._response.release()


def default_connector(settings: GatewaySettings) -> aiohttp.BaseConnector:
    # Keep-alive expiry stays under uvicorn's idle timeout (GatewaySettings.keepalive_expiry_s).
    return aiohttp.TCPConnector(
        limit=settings.max_connections, keepalive_timeout=settings.keepalive_expiry_s, use_dns_cache=True
    )


class Upstreams:
    """The services by name, reached through one shared connection pool.

    ``connector`` builds the pool's connector (default: ``default_connector``); tests pass one that
    refuses connections to show what the gateway answers then."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        connector: Callable[[GatewaySettings], aiohttp.BaseConnector] | None = None,
        internal: InternalAuthSettings | None = None,
    ) -> None:
        self.settings = settings
        self.urls = settings.service_urls()
        self.internal = internal or InternalAuthSettings()
        self._connector = connector or default_connector
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a session needs the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self._connector(self.settings),
                auto_decompress=False,  # we ask for identity; never decode what we pass through
                trust_env=False,  # an HTTP(S)_PROXY in the environment must not sit between gateway and services
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
                # One session serves every caller: a service's Set-Cookie must never ride along on
                # someone else's request (and skipping the jar saves work per request).
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
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
        timeouts: aiohttp.ClientTimeout | None = None,
        stream: bool = False,
    ) -> UpstreamResponse:
        """Send one request to ``service``; raise UpstreamError instead of transport errors.

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
                response = await self._send(service, method, url, all_headers, content, timeout, stream)
            except (TimeoutError, aiohttp.ClientError) as exc:
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

    async def _send(
        self,
        service: str,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        budget: aiohttp.ClientTimeout,
        stream: bool,
    ) -> UpstreamResponse:
        raw = await self._client().request(
            method,
            yarl.URL(url, encoded=True),  # the path and query exactly as the client sent them
            headers=headers,
            data=content,
            timeout=budget,
            allow_redirects=False,
        )
        if stream:
            return UpstreamResponse(service, raw)
        # Read here, not through aread: a failed read is a failed call (classified, retried when safe).
        try:
            content = await raw.read()
        finally:
            raw.release()
        return UpstreamResponse(service, raw, content)
