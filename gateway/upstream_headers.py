"""What crosses the edge with a call into a service and with its answer: an allow-list of the client's
request headers, hop-by-hop and gateway-owned response headers dropped, and Location rewritten into the
public /api/v1 path."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.routes import API_PREFIX

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
# Response headers the gateway's own server sets (or recomputes for the body it sends).
_GATEWAY_OWNED = frozenset({"content-length", "content-encoding", "date", "server", "x-request-id"})


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
