"""The public route table and the permission table: who answers each /api/v1 path, and who may ask.

Pure data and pure functions, so the whole public surface and its access rules can be read (and tested)
in one place. Every public path is ``/api/v1`` + the service's own path; the route table only decides
*which* service. The permission table says, per method and path, which permission a caller needs and,
for roles limited to their own customers (agent, manager), how the gateway narrows the request to them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import unquote

API_PREFIX = "/api/v1"
# Paths the gateway answers itself (composed views) rather than forwarding.
GATEWAY = "gateway"
WILDCARD = "*"
# Lookups in the default tables for paths up to this long are remembered per process (a bounded LRU): the
# tables are scanned rule by rule, several times per request, and that showed in the gateway's profile.
MEMO_MAX_PATH = 256


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
            _prefix(GATEWAY, "keys"),
            _prefix(GATEWAY, "audit"),
            _prefix("interaction", "customers", WILDCARD, "interactions"),
            _prefix("scoring", "customers", WILDCARD, "scores"),
            Route(("customers", WILDCARD, "value"), "scoring", exact=True),
            _prefix("retention", "customers", WILDCARD, "touches"),
            _prefix("retention", "customers", WILDCARD, "enrolments"),
            _prefix("retention", "customers", WILDCARD, "followups"),
            Route(("customers", WILDCARD, "loyalty"), "retention", exact=True),
            Route(("customers", WILDCARD, "churn-suggestion"), "retention", exact=True),
            _prefix("customer", "customers"),
            _prefix("interaction", "interactions"),
            _prefix("interaction", "complaints"),
            # ERP/SCM events parked until their customer appears (read-only, for integration owners).
            _prefix("interaction", "integrations"),
            _prefix("scoring", "scores"),
            _prefix("scoring", "models"),
            _prefix("scoring", "jobs"),
            _prefix("retention", "alerts"),
            _prefix("retention", "work-items"),
            _prefix("retention", "rules"),
            _prefix("retention", "playbooks"),
            _prefix("retention", "tasks"),
            Route(("enrolments", WILDCARD), "retention"),  # no list: enrolments are read per customer
            _prefix("retention", "retention"),
            _prefix("retention", "webhooks"),
            # win-back campaigns and their offer catalogue (docs/campaigns.md)
            _prefix("retention", "offers"),
            _prefix("retention", "campaigns"),
            _prefix("retention", "followup-schedules"),
            _prefix("retention", "followup-triggers"),
            Route(("surveys", "respond", WILDCARD), "retention", exact=True),
            # reports, each computed by the service that owns the data (docs/reports.md)
            _prefix("customer", "reports", "customers"),
            _prefix("interaction", "reports", "complaints"),
            _prefix("scoring", "reports", "value"),
            # saved customer filters over scores, value and RFM (the segment builder)
            _prefix("scoring", "segments"),
            _prefix("retention", "reports", "retention"),
            # run-time settings, each kept by the service it tunes (docs/runtime-settings.md)
            _prefix("interaction", "settings", "interaction"),
            _prefix("retention", "settings", "retention"),
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
    """Map a canonical public path (gateway.canonical, encoded) to (service, upstream path), or None.

    A trailing slash is dropped so ``/api/v1/customers/`` reaches ``/customers`` instead of being
    redirected by the service to its own (internal) address.
    """
    if routes is ROUTES and len(path) <= MEMO_MAX_PATH:
        return _resolve_memo(path)
    return _resolve(path, routes)


@functools.lru_cache(maxsize=2048)
def _resolve_memo(path: str) -> Resolved | None:
    return _resolve(path, ROUTES)


def _resolve(path: str, routes: tuple[Route, ...]) -> Resolved | None:
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


# ---- permissions ---------------------------------------------------------------------------------------


class Scope(StrEnum):
    """How a request is narrowed for an owner-scoped role (agent: own customers; manager: the team's)."""

    UNSCOPED = "unscoped"  # the same for everyone holding the permission (or no customer data involved)
    CUSTOMER_PATH = "customer_path"  # /customers/{id}/...: that customer must be theirs
    OWNER_LIST = "owner_list"  # a list: forced to ?owner=<theirs>, and every item is checked again
    CUSTOMER_QUERY = "customer_query"  # a list: ?customer_id= is required and must be theirs
    # a list: ?customer_id= must be theirs; without one, forced to ?owner=<theirs> like OWNER_LIST
    CUSTOMER_OR_OWNER = "customer_or_owner"
    BODY_CUSTOMER = "body_customer"  # the JSON body's customer_id must be theirs
    BODY_OWNER = "body_owner"  # the JSON body's owner must be one of them
    RESOURCE = "resource"  # the resource (GET /{collection}/{id}) must belong to one of their customers
    OWNER_STREAM = "owner_stream"  # an event stream: only events of their customers' alerts are relayed


READ = frozenset({"GET", "HEAD"})
WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
POST = frozenset({"POST"})
PATCH = frozenset({"PATCH"})
PUT = frozenset({"PUT"})
DELETE = frozenset({"DELETE"})
PUT_PATCH_DELETE = frozenset({"PUT", "PATCH", "DELETE"})
ANY = READ | WRITE


@dataclass(frozen=True)
class Permission:
    """``methods`` on ``pattern`` (``*`` = one segment; ``prefix`` = also every path below) need ``permission``."""

    methods: frozenset[str]
    pattern: tuple[str, ...]
    permission: str
    scope: Scope = Scope.UNSCOPED
    prefix: bool = False

    def matches(self, method: str, segments: list[str]) -> bool:
        if method not in self.methods or len(segments) < len(self.pattern):
            return False
        if not self.prefix and len(segments) != len(self.pattern):
            return False
        return all(p in (WILDCARD, s) for p, s in zip(self.pattern, segments, strict=False))

    @property
    def specificity(self) -> tuple[int, int, int]:
        # Exact rules beat prefix rules of the same length; then longer and more literal patterns.
        return len(self.pattern), sum(p != WILDCARD for p in self.pattern), int(not self.prefix)


def _p(
    methods: frozenset[str], path: str, permission: str, scope: Scope = Scope.UNSCOPED, prefix: bool = False
) -> Permission:
    return Permission(methods, tuple(path.split("/")), permission, scope, prefix)


S = Scope
PERMISSIONS: tuple[Permission, ...] = tuple(
    sorted(
        (
            # customers
            _p(READ, "customers", "customers:read", S.OWNER_LIST),
            _p(POST, "customers", "customers:write", S.BODY_OWNER),
            _p(POST, "customers/bulk", "customers:bulk"),
            _p(POST, "customers/status/bulk", "customers:bulk"),
            # ids by external reference, for imports that name customers so (the import role has no customers:read)
            _p(POST, "customers/resolve", "customers:bulk"),
            _p(READ, "customers/*", "customers:read", S.CUSTOMER_PATH, prefix=True),
            _p(PATCH, "customers/*", "customers:write", S.CUSTOMER_PATH),
            _p(DELETE, "customers/*", "customers:erase"),
            _p(POST, "customers/*/status", "customers:write", S.CUSTOMER_PATH),
            _p(READ, "customers/*/erasure", "customers:erase", prefix=True),
            # consent (reads: customers:read through customers/*); the bulk import is unscoped like customers/bulk
            _p(PUT, "customers/*/consent", "consent:write", S.CUSTOMER_PATH),
            _p(POST, "customers/consent/bulk", "consent:bulk"),
            _p(READ, "customers/*/touches", "tasks:read", S.CUSTOMER_PATH, prefix=True),
            _p(READ, "customers/*/enrolments", "tasks:read", S.CUSTOMER_PATH, prefix=True),
            _p(READ, "customers/*/followups", "tasks:read", S.CUSTOMER_PATH, prefix=True),
            # loyalty points: reading like the profile; booking an entry is an administrator's or the ERP's
            _p(READ, "customers/*/points", "customers:read", S.CUSTOMER_PATH),
            _p(POST, "customers/*/points", "points:write", S.CUSTOMER_PATH),
            _p(READ, "customers/*/360", "customers:read", S.CUSTOMER_PATH),
            _p(READ, "customers/*/interactions", "interactions:read", S.CUSTOMER_PATH, prefix=True),
            _p(READ, "customers/*/scores", "scores:read", S.CUSTOMER_PATH, prefix=True),
            _p(READ, "customers/*/value", "scores:read", S.CUSTOMER_PATH),
            _p(READ, "customers/*/loyalty", "customers:read", S.CUSTOMER_PATH),
            _p(READ, "customers/*/churn-suggestion", "customers:read", S.CUSTOMER_PATH),
            # interactions and complaints
            _p(READ, "interactions", "interactions:read", S.CUSTOMER_QUERY),
            _p(POST, "interactions", "interactions:write", S.BODY_CUSTOMER),
            _p(POST, "interactions/bulk", "interactions:bulk"),
            _p(READ, "interactions/*", "interactions:read", S.RESOURCE),
            # an agent's complaint desk: one customer of theirs, or all of their customers (owner in the replica)
            _p(READ, "complaints", "complaints:read", S.CUSTOMER_OR_OWNER),
            _p(READ, "complaints/*", "complaints:read", S.RESOURCE, prefix=True),
            _p(WRITE, "complaints/*", "complaints:write", S.RESOURCE, prefix=True),
            _p(READ, "integrations", "integrations:read", prefix=True),
            # scoring and models
            _p(READ, "scores", "scores:rank"),
            # the pyramid, funnel and risk distribution: aggregates only, so managers read them unnarrowed
            _p(READ, "scores/summary", "reports:read"),
            _p(READ, "models", "models:read", prefix=True),
            _p(WRITE, "models", "models:write", prefix=True),
            _p(READ, "jobs", "models:read", prefix=True),
            # alerts, rules, playbooks, tasks, metrics, webhooks
            _p(READ, "alerts", "alerts:read", S.OWNER_LIST),
            _p(READ, "alerts/stream", "alerts:stream", S.OWNER_STREAM),
            _p(READ, "alerts/*", "alerts:read", S.RESOURCE),
            _p(POST, "alerts/*", "alerts:write", S.RESOURCE, prefix=True),
            _p(POST, "alerts/evaluate", "alerts:evaluate"),
            _p(READ, "work-items", "alerts:read", S.OWNER_LIST),
            _p(READ, "rules", "rules:read", prefix=True),
            _p(WRITE, "rules", "rules:write", prefix=True),
            _p(READ, "playbooks", "playbooks:read", prefix=True),
            _p(WRITE, "playbooks", "playbooks:write", prefix=True),
            _p(READ, "tasks", "tasks:read", S.OWNER_LIST),
            _p(POST, "tasks", "tasks:write", S.BODY_CUSTOMER),
            _p(READ, "tasks/*", "tasks:read", S.RESOURCE, prefix=True),
            _p(WRITE, "tasks/*", "tasks:write", S.RESOURCE, prefix=True),
            # sequence enrolments: read and stopped like tasks, on the enrolment's customer
            _p(READ, "enrolments/*", "tasks:read", S.RESOURCE),
            _p(POST, "enrolments/*/stop", "tasks:write", S.RESOURCE),
            _p(READ, "retention", "metrics:read", prefix=True),
            _p(ANY, "webhooks", "webhooks:admin", prefix=True),
            # win-back campaigns: the members list names customers across owners, so reading campaigns is
            # not for owner-scoped roles; a campaign's report is aggregates only, like the other reports
            _p(READ, "offers", "campaigns:read", prefix=True),
            _p(WRITE, "offers", "campaigns:write", prefix=True),
            _p(READ, "campaigns", "campaigns:read", prefix=True),
            _p(WRITE, "campaigns", "campaigns:write", prefix=True),
            _p(READ, "campaigns/*/report", "reports:read"),
            # scheduled follow-ups per tier: configured like playbooks
            _p(READ, "followup-schedules", "playbooks:read", prefix=True),
            _p(WRITE, "followup-schedules", "playbooks:write", prefix=True),
            _p(READ, "followup-triggers", "playbooks:read", prefix=True),
            _p(WRITE, "followup-triggers", "playbooks:write", prefix=True),
            # survey links: answered without a login (PUBLIC below), by the token in the path
            _p(READ | POST, "surveys/respond/*", "surveys:respond"),
            # reports: aggregates only (no customer is listed), so managers read them unnarrowed
            _p(READ, "reports/customers", "reports:read", prefix=True),
            _p(READ, "reports/complaints", "reports:read", prefix=True),
            _p(READ, "reports/value", "reports:read", prefix=True),
            # segments list customers across owners: like the ranked score list, not for owner-scoped roles
            _p(READ, "segments", "segments:read", prefix=True),
            _p(WRITE, "segments", "segments:write", prefix=True),
            _p(READ, "reports/retention", "reports:read", prefix=True),
            # ... except this one, which lists customers: a manager sees only the team's
            _p(READ, "reports/retention/satisfaction-trap", "reports:read", S.OWNER_LIST),
            _p(READ, "reports/retention/satisfaction-trap/today", "reports:read", S.OWNER_LIST),
            # the gateway's own API-key management
            _p(ANY, "keys", "keys:admin", prefix=True),
            # the gateway's audit log (who changed what): admins only
            _p(READ, "audit", "audit:read", prefix=True),
            # run-time settings (read, changed, reset, their change log): admins only
            _p(ANY, "settings/interaction", "settings:admin", prefix=True),
            _p(ANY, "settings/retention", "settings:admin", prefix=True),
        ),
        key=lambda p: p.specificity,
        reverse=True,
    )
)

ALL_PERMISSIONS = frozenset(p.permission for p in PERMISSIONS)
# Every read permission except reading erasure receipts (personal-data handling is the admin's) and the
# audit log (who did what is the admin's to see).
_READS = frozenset(p.permission for p in PERMISSIONS if p.methods <= READ) - {"customers:erase", "audit:read"}
# Roles limited to customers they own (agent) or their team owns (manager); see Scope.
OWNER_SCOPED_ROLES = frozenset({"agent", "manager"})
_CASEWORK = frozenset(
    {
        "customers:read",
        "customers:write",
        "interactions:read",
        "interactions:write",
        "complaints:read",
        "complaints:write",
        "scores:read",
        "alerts:read",
        "alerts:write",
        "alerts:stream",  # narrowed by the gateway to the caller's own alerts (gateway.sse_filter)
        "tasks:read",
        "tasks:write",
        "playbooks:read",
        "consent:write",  # an agent records what the customer said (an opt-out on the phone)
    }
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # Whoever opens a survey link (no login): that route only, rate-limited per source address.
    "respondent": frozenset({"surveys:respond"}),
    "agent": _CASEWORK,
    "manager": _CASEWORK | {"rules:read", "metrics:read", "reports:read"},
    # Read-only on everything (including the ranked score list and the alert stream), plus model jobs.
    "analyst": _READS | {"models:write", "segments:write"},
    "admin": ALL_PERMISSIONS,
    # ERP/SCM and marketing systems: write interactions and customers in bulk, read and follow alerts.
    "integration": frozenset(
        {
            "interactions:write",
            "interactions:bulk",
            "customers:bulk",
            "customers:write",
            "consent:write",
            "consent:bulk",
            "points:write",  # loyalty adjustments booked by the ERP (docs/loyalty-points.md)
            "customers:read",
            "alerts:read",
            "alerts:stream",
            "integrations:read",  # its own inbound events parked for an unknown customer
        }
    ),
    # Loading a company's history (docs/onboarding.md): the bulk routes only, with their own rate and
    # row limits (GATEWAY_RATE_LIMITS, GATEWAY_BULK_ROWS_PER_S); it reads nothing about customers.
    "importer": frozenset({"customers:bulk", "interactions:bulk", "integrations:read"}),
}


# Routes answered without a login: the caller is a "respondent" (the one-time token in the path is the
# credential). Everything else under /api/v1 needs a JWT or an API key.
PUBLIC: tuple[Permission, ...] = (_p(READ | POST, "surveys/respond/*", "surveys:respond"),)


def is_public(method: str, path: str) -> bool:
    """Whether ``method`` on the public path (``/api/v1/...``) is answered without a login."""
    return permission_for(method, path, PUBLIC) is not None


def permission_for(method: str, path: str, rules: tuple[Permission, ...] = PERMISSIONS) -> Permission | None:
    """The rule governing ``method`` on a public path (``/api/v1/...``), or None if none does."""
    if (rules is PERMISSIONS or rules is PUBLIC) and len(path) <= MEMO_MAX_PATH:
        return _permission_memo(method, path, rules is PUBLIC)
    return _permission_for(method, path, rules)


@functools.lru_cache(maxsize=4096)
def _permission_memo(method: str, path: str, public: bool) -> Permission | None:
    return _permission_for(method, path, PUBLIC if public else PERMISSIONS)


def _permission_for(method: str, path: str, rules: tuple[Permission, ...]) -> Permission | None:
    if not path.startswith(API_PREFIX + "/"):
        return None
    segments = path[len(API_PREFIX) + 1 :].rstrip("/").split("/")
    method = "GET" if method == "HEAD" else method
    for rule in rules:
        if rule.matches(method, segments):
            return rule
    return None
