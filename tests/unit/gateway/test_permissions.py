"""The declarative permission table: every route is covered, and each role gets exactly what it should."""

import pytest

from gateway.routes import (
    GATEWAY,
    OWNER_SCOPED_ROLES,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROUTES,
    Scope,
    permission_for,
    resolve,
)


def _path(pattern: tuple[str, ...]) -> str:
    return "/api/v1/" + "/".join("x1" if p == "*" else p for p in pattern)


def test_every_route_of_the_route_table_has_a_permission_rule() -> None:
    for route in ROUTES:
        covered = any(permission_for(method, _path(route.pattern)) for method in ("GET", "POST"))
        assert covered, route


def test_every_permission_rule_points_at_a_routed_path() -> None:
    for rule in PERMISSIONS:
        assert resolve(_path(rule.pattern)) is not None, rule


def test_every_permission_is_granted_to_admin_and_every_role_names_only_known_permissions() -> None:
    every = {rule.permission for rule in PERMISSIONS}
    assert ROLE_PERMISSIONS["admin"] == every
    for role, granted in ROLE_PERMISSIONS.items():
        assert granted <= every, role


def test_owner_scoped_roles_only_hold_permissions_whose_routes_narrow_them_or_touch_no_customer_data() -> None:
    # An agent with an unscoped customer route would see every customer.
    unscoped_customer_data = {
        rule.permission
        for rule in PERMISSIONS
        if rule.scope is Scope.UNSCOPED
        # aggregates and configuration: no customer of someone else's is listed
        and rule.permission not in {"playbooks:read", "rules:read", "metrics:read", "reports:read"}
    }
    for role in OWNER_SCOPED_ROLES:
        assert not (ROLE_PERMISSIONS[role] & unscoped_customer_data), role


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("GET", "/api/v1/customers", "customers:read"),
        ("HEAD", "/api/v1/customers/c-1", "customers:read"),
        ("POST", "/api/v1/customers/bulk", "customers:bulk"),
        ("POST", "/api/v1/customers/status/bulk", "customers:bulk"),
        ("POST", "/api/v1/customers/resolve", "customers:bulk"),
        ("DELETE", "/api/v1/customers/c-1", "customers:erase"),
        ("GET", "/api/v1/customers/c-1/scores/history", "scores:read"),
        ("GET", "/api/v1/customers/c-1/360", "customers:read"),
        ("POST", "/api/v1/interactions", "interactions:write"),
        ("POST", "/api/v1/interactions/bulk", "interactions:bulk"),
        ("POST", "/api/v1/complaints/k-1/transitions", "complaints:write"),
        ("GET", "/api/v1/alerts/stream", "alerts:stream"),
        ("GET", "/api/v1/alerts/a-1", "alerts:read"),
        ("POST", "/api/v1/alerts/a-1/acknowledge", "alerts:write"),
        ("POST", "/api/v1/alerts/evaluate", "alerts:evaluate"),
        ("GET", "/api/v1/work-items", "alerts:read"),
        ("POST", "/api/v1/rules/r-1/preview", "rules:write"),
        ("POST", "/api/v1/models/churn/train", "models:write"),
        ("POST", "/api/v1/models/churn/deactivate", "models:write"),
        ("GET", "/api/v1/jobs/j-1", "models:read"),
        ("GET", "/api/v1/retention/metrics", "metrics:read"),
        ("GET", "/api/v1/reports/customers/churn-reasons", "reports:read"),
        ("GET", "/api/v1/integrations/parked", "integrations:read"),
        ("DELETE", "/api/v1/keys/k-1", "keys:admin"),
    ],
)
def test_each_request_needs_the_declared_permission(method: str, path: str, permission: str) -> None:
    rule = permission_for(method, path)
    assert rule is not None
    assert rule.permission == permission


def test_retention_reports_and_customer_views_route_to_retention_with_their_scopes() -> None:
    loyalty = permission_for("GET", "/api/v1/customers/c-1/loyalty")
    suggestion = permission_for("GET", "/api/v1/customers/c-1/churn-suggestion")
    assert loyalty is not None and suggestion is not None
    assert (loyalty.permission, loyalty.scope) == ("customers:read", Scope.CUSTOMER_PATH)
    assert (suggestion.permission, suggestion.scope) == ("customers:read", Scope.CUSTOMER_PATH)
    assert resolve("/api/v1/customers/c-1/loyalty") == ("retention", "/customers/c-1/loyalty")
    assert resolve("/api/v1/customers/c-1/churn-suggestion") == ("retention", "/customers/c-1/churn-suggestion")
    assert resolve("/api/v1/reports/retention/owners") == ("retention", "/reports/retention/owners")
    owners = permission_for("GET", "/api/v1/reports/retention/owners")
    assert owners is not None and (owners.permission, owners.scope) == ("reports:read", Scope.UNSCOPED)
    # Cohorts and task SLA are aggregates (no customer listed): read unnarrowed, like owner performance.
    for route in ("cohorts", "task-sla"):
        assert resolve(f"/api/v1/reports/retention/{route}") == ("retention", f"/reports/retention/{route}")
        rule = permission_for("GET", f"/api/v1/reports/retention/{route}")
        assert rule is not None and (rule.permission, rule.scope) == ("reports:read", Scope.UNSCOPED)
        assert permission_for("POST", f"/api/v1/reports/retention/{route}") is None
    # The one retention report that lists customers narrows a manager to the team's.
    traps = permission_for("GET", "/api/v1/reports/retention/satisfaction-trap")
    assert traps is not None and (traps.permission, traps.scope) == ("reports:read", Scope.OWNER_LIST)
    # ... and so does its "as of today" list; today's distribution is an aggregate.
    today = permission_for("GET", "/api/v1/reports/retention/satisfaction-trap/today")
    assert today is not None and (today.permission, today.scope) == ("reports:read", Scope.OWNER_LIST)
    loyalty = permission_for("GET", "/api/v1/reports/retention/loyalty/today")
    assert loyalty is not None and (loyalty.permission, loyalty.scope) == ("reports:read", Scope.UNSCOPED)


def test_a_method_no_rule_covers_has_no_permission() -> None:
    assert permission_for("PUT", "/api/v1/customers/c-1") is None
    assert permission_for("GET", "/health/live") is None
    # The customer service's batch lookup is for the other services only.
    assert permission_for("POST", "/api/v1/customers/lookup") is None


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        ("agent", {"customers:read", "alerts:write", "tasks:write"},
         {"rules:write", "keys:admin", "scores:rank", "integrations:read", "reports:read"}),
        ("manager", {"metrics:read", "reports:read", "rules:read", "alerts:write"},
         {"rules:write", "models:write", "keys:admin", "integrations:read"}),
        ("analyst", {"scores:rank", "models:read", "models:write", "metrics:read", "alerts:read", "integrations:read",
                     "reports:read"},
         {"customers:write", "alerts:write", "rules:write", "keys:admin", "customers:erase"}),
        ("integration", {"interactions:write", "interactions:bulk", "customers:bulk", "alerts:read",
                         "integrations:read"},
         {"scores:read", "rules:read", "keys:admin", "tasks:write"}),
    ],
)  # fmt: skip
def test_roles_grant_what_the_platform_promises(role: str, allowed: set[str], denied: set[str]) -> None:
    assert allowed <= ROLE_PERMISSIONS[role]
    assert not (denied & ROLE_PERMISSIONS[role])


def test_the_gateways_own_routes_are_covered_too() -> None:
    assert resolve("/api/v1/keys").service == GATEWAY
    assert permission_for("POST", "/api/v1/keys").permission == "keys:admin"
