"""The public route table: which service answers each /api/v1 path, and at which upstream path.

Pure data and one pure function, so the whole public surface can be read (and tested) in one place.
Every public path is ``/api/v1`` + the service's own path; the table only decides *which* service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote

API_PREFIX = "/api/v1"
# Paths the gateway answers itself (composed views) rather than forwarding.
GATEWAY = "gateway"
WILDCARD = "*"


@dataclass(frozen=True)
class Route:
    """``pattern`` is a tuple of path segments; ``*`` matches exactly one segment.

    A prefix route also matches every path below it; an exact route only the path itself.
    """

    pattern: tuple[str, ...]
    service: str
    exact: bool = False

    def matches(self, segments: list[str]) -> bool:
        if len(segments) < len(self.pattern) or (self.exact and len(segments) != len(self.pattern)):
            return False
        return all(p in (WILDCARD, s) for p, s in zip(self.pattern, segments, strict=False))

    @property
    def specificity(self) -> tuple[int, int]:
        # Longer patterns first; among equal lengths, more literal segments first.
        return len(self.pattern), sum(p != WILDCARD for p in self.pattern)


class Resolved(NamedTuple):
    service: str
    upstream_path: str


def _prefix(service: str, *segments: str) -> Route:
    return Route(tuple(segments), service)


ROUTES: tuple[Route, ...] = tuple(
    sorted(
        (
            # Sub-resources of a customer that other services own.
            Route(("customers", WILDCARD, "360"), GATEWAY, exact=True),
            _prefix("interaction", "customers", WILDCARD, "interactions"),
            _prefix("scoring", "customers", WILDCARD, "scores"),
            _prefix("customer", "customers"),
            _prefix("interaction", "interactions"),
            _prefix("interaction", "complaints"),
            _prefix("scoring", "scores"),
            _prefix("scoring", "models"),
            _prefix("scoring", "jobs"),
            _prefix("retention", "alerts"),
            _prefix("retention", "rules"),
            _prefix("retention", "playbooks"),
            _prefix("retention", "tasks"),
            _prefix("retention", "retention"),
            _prefix("retention", "webhooks"),
        ),
        key=lambda r: r.specificity,
        reverse=True,
    )
)


def _safe_segment(segment: str) -> bool:
    # Dot segments would be collapsed by the HTTP client and could walk into another service's
    # path; an encoded slash would be re-split by the service. No valid id contains either.
    if not segment:
        return False
    decoded = unquote(segment)
    return decoded not in (".", "..") and "/" not in decoded and "\\" not in decoded


def resolve(path: str, routes: tuple[Route, ...] = ROUTES) -> Resolved | None:
    """Map a public path (as received, still percent-encoded) to (service, upstream path), or None.

    A trailing slash is dropped so ``/api/v1/customers/`` reaches ``/customers`` instead of being
    redirected by the service to its own (internal) address.
    """
    if not path.startswith(API_PREFIX + "/"):
        return None
    rest = path[len(API_PREFIX) + 1 :].rstrip("/")
    if not rest:
        return None
    segments = rest.split("/")
    if not all(_safe_segment(s) for s in segments):
        return None
    for route in routes:
        if route.matches(segments):
            return Resolved(route.service, "/" + rest)
    return None
