"""The API fuzz's cross-field exceptions excuse a refused request only when it breaks the named rule of its own
route and the refusal names that rule's fields: every other request of the route stays under the check."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.fuzz_exceptions import CROSS_FIELD_RULES, excused_by
from tests.e2e.fuzz_rules import Sent


class FakeLookup:
    def __init__(
        self,
        stored: dict[str, Any] | None = None,
        cursors: dict[str, dict[str, Mapping[str, Any]]] | None = None,
        bodies: dict[tuple[str, str], list[Any]] | None = None,
    ) -> None:
        self.stored, self.cursors, self.bodies = stored or {}, cursors or {}, bodies or {}

    def get(self, path: str) -> Any:
        return self.stored.get(path)

    def issued_cursors(self, path: str) -> Mapping[str, Mapping[str, Any]]:
        return self.cursors.get(path, {})

    def idempotent_bodies(self, path: str, key: str) -> list[Any]:
        return self.bodies.get((path, key), [])


def refusal(*fields: str) -> dict[str, Any]:
    return {"status": 422, "errors": [{"field": f, "message": "refused"} for f in fields]}


SOON = (datetime.now(UTC) + timedelta(days=2)).isoformat()
PAST = "2020-01-01T00:00:00Z"
LOOKUP = FakeLookup(
    stored={
        "/offers/live": {"id": "live", "active": True},
        "/offers/retired": {"id": "retired", "active": False},
        "/segments/s1": {"id": "s1"},
        "/customers/c1": {"id": "c1", "version": 3},
        "/rules/r1": {"id": "r1", "kind": "risk_jump"},
        "/settings/retention": {"items": [{"name": "alert_page", "json_schema": {"type": "integer", "minimum": 1}}]},
    },
    cursors={"/api/v1/customers": {"issued": {"sort": "name"}}, "/api/v1/audit": {"issued": {}}},
    bodies={("/api/v1/customers/status/bulk", "k1"): [{"rows": [1]}], ("/api/v1/customers", "k2"): [{"name": "A"}]},
)

# (rule name, the request that breaks it, the same route's request that does not, the refusal's fields)
CASES = [
    (
        "audit window and cursor",
        Sent("GET", "/api/v1/audit", query={"since": SOON, "until": PAST}),
        Sent("GET", "/api/v1/audit", query={"since": PAST, "until": SOON}),
        ("query.until",),
    ),
    (
        "audit window and cursor",
        Sent("GET", "/api/v1/audit", query={"cursor": "made-up"}),
        Sent("GET", "/api/v1/audit", query={"cursor": "issued"}),
        ("query.cursor",),
    ),
    (
        "timeline window",
        Sent("GET", "/api/v1/customers/{customer_id}/interactions", query={"since": SOON, "until": SOON}),
        Sent("GET", "/api/v1/customers/{customer_id}/interactions", query={"until": PAST}),
        ("until",),
    ),
    (
        "interaction fields by type",
        Sent("POST", "/api/v1/interactions", body={"type": "purchase"}),
        Sent("POST", "/api/v1/interactions", body={"type": "purchase", "amount": 3, "currency": "EUR"}),
        ("amount",),
    ),
    (
        "interaction fields by type",
        Sent("POST", "/api/v1/interactions", body={"type": "survey", "survey": "csat", "score": 9}),
        Sent("POST", "/api/v1/interactions", body={"type": "survey", "survey": "nps", "score": 9}),
        ("score",),
    ),
    (
        "interaction fields by type",
        Sent("POST", "/api/v1/interactions", body={"type": "complaint", "severity": "low", "category": "weather"}),
        Sent("POST", "/api/v1/interactions", body={"type": "complaint", "severity": "low", "category": " Billing"}),
        ("category",),
    ),
    (
        "report period",
        Sent("GET", "/api/v1/reports/value/summary", query={"from": "2026-02-01", "to": "2026-01-01"}),
        Sent("GET", "/api/v1/reports/value/summary", query={"from": "2026-01-01", "to": "2026-02-01"}),
        ("query.to",),
    ),
    (
        "metrics period",
        Sent("GET", "/api/v1/retention/metrics", query={"from": SOON, "to": PAST}),
        Sent("GET", "/api/v1/retention/metrics", query={"from": PAST, "to": SOON}),
        ("to",),
    ),
    (
        "rule params by kind",
        Sent("POST", "/api/v1/rules", body={"kind": "risk_jump", "params": {"delta": 0.2}}),
        Sent("POST", "/api/v1/rules", body={"kind": "risk_jump", "params": {"delta": 0.2, "within_days": 7}}),
        ("params.within_days",),
    ),
    (
        "rule params by kind",
        Sent("PATCH", "/api/v1/rules/{rule_id}", {"rule_id": "r1"}, body={"params": {"threshold": 0.5}}),
        Sent("PATCH", "/api/v1/rules/{rule_id}", {"rule_id": "r1"}, body={"params": {"delta": 0.1, "within_days": 3}}),
        ("params.delta",),
    ),
    (
        "rule params by kind",
        Sent("POST", "/api/v1/rules/preview", body={"from": SOON, "to": PAST, "rule": {"kind": "complaint_overdue"}}),
        Sent("POST", "/api/v1/rules/preview", body={"from": PAST, "to": SOON, "rule": {"kind": "complaint_overdue"}}),
        ("to",),
    ),
    (
        "setting value by name",
        Sent("PUT", "/api/v1/settings/retention/{name}", {"name": "alert_page"}, body={"value": "x"}),
        Sent("PUT", "/api/v1/settings/retention/{name}", {"name": "alert_page"}, body={"value": 5}),
        ("value",),
    ),
    (
        "churn details by status",
        Sent("POST", "/api/v1/customers", body={"name": "A", "churned_at": "2025-01-01"}),
        Sent("POST", "/api/v1/customers", body={"name": "A", "status": "won_back", "churned_at": "2025-01-01"}),
        ("churned_at",),
    ),
    (
        "e-mail domain special-use",
        Sent("POST", "/api/v1/customers", body={"name": "A", "email": "a@s.v.test"}),
        Sent("POST", "/api/v1/customers", body={"name": "A", "email": "a@testing.example.com"}),
        ("email",),
    ),
    (
        "consent preferences",
        Sent(
            "PUT", "/api/v1/customers/{customer_id}/consent", body={"quiet_hours": {"start": "00:00", "end": "00:00"}}
        ),
        Sent(
            "PUT", "/api/v1/customers/{customer_id}/consent", body={"quiet_hours": {"start": "22:00", "end": "07:00"}}
        ),
        ("quiet_hours",),
    ),
    (
        "consent preferences",
        Sent(
            "PUT",
            "/api/v1/customers/{customer_id}/consent",
            body={"channels": {"visit": {"at": "2926-05-29T02:30:35Z"}}},
        ),
        Sent("PUT", "/api/v1/customers/{customer_id}/consent", body={"channels": {"visit": {"at": PAST}}}),
        ("channels.visit.at",),
    ),
    (
        "contact value by kind",
        Sent("POST", "/api/v1/customers", body={"name": "A", "contacts": [{"kind": "email", "value": "0"}]}),
        Sent("POST", "/api/v1/customers", body={"name": "A", "contacts": [{"kind": "address", "value": "0"}]}),
        ("contacts[0]",),
    ),
    (
        "contact value by kind",
        Sent("PATCH", "/api/v1/customers/{customer_id}", body={"contacts": [{"kind": "phone", "value": "call me"}]}),
        Sent("PATCH", "/api/v1/customers/{customer_id}", body={"contacts": [{"kind": "phone", "value": "+49 30 1"}]}),
        ("contacts[0]",),
    ),
    (
        "customer cursor",
        Sent("GET", "/api/v1/customers", query={"cursor": "issued", "sort": "value"}),
        Sent("GET", "/api/v1/customers", query={"cursor": "issued", "sort": "name"}),
        ("query.cursor",),
    ),
    (
        "points amount by kind",
        Sent("POST", "/api/v1/customers/{customer_id}/points", body={"kind": "adjust", "amount": 0}),
        Sent("POST", "/api/v1/customers/{customer_id}/points", body={"kind": "adjust", "amount": -4}),
        ("body",),
    ),
    (
        "points amount by kind",
        Sent("POST", "/api/v1/customers/{customer_id}/points", body={"kind": "redeem", "amount": -1341.0}),
        Sent("POST", "/api/v1/customers/{customer_id}/points", body={"kind": "redeem", "amount": 5.0}),
        ("body",),
    ),
    (
        "consent preferences",
        Sent("PUT", "/api/v1/customers/{customer_id}/consent", body={"timezone": "Mars/Olympus"}),
        Sent("PUT", "/api/v1/customers/{customer_id}/consent", body={"timezone": "Asia/Shanghai"}),
        ("timezone",),
    ),
    (
        "Idempotency-Key reused",
        Sent("POST", "/api/v1/customers/status/bulk", headers={"Idempotency-Key": "k1"}, body={"rows": [2]}),
        Sent("POST", "/api/v1/customers/status/bulk", headers={"Idempotency-Key": "k1"}, body={"rows": [1]}),
        ("header.idempotency-key",),
    ),
    (
        "Idempotency-Key reused",
        Sent("POST", "/api/v1/customers", headers={"idempotency-key": "k2"}, body={"name": "B"}),
        Sent("POST", "/api/v1/customers", headers={"idempotency-key": "k2"}, body={"name": "A"}),
        ("header.idempotency-key",),
    ),
    (
        "status change details",
        Sent("POST", "/api/v1/customers/{customer_id}/status", body={"status": "churned", "churned_at": "2000-01-01"}),
        Sent(
            "POST",
            "/api/v1/customers/{customer_id}/status",
            body={"status": "churned", "churned_at": "2000-01-01", "reason": "price"},
        ),
        ("reason",),
    ),
    (
        "snooze deadline",
        Sent("POST", "/api/v1/alerts/{alert_id}/snooze", body={"until": PAST, "reason": "r"}),
        Sent("POST", "/api/v1/alerts/{alert_id}/snooze", body={"until": SOON, "reason": "r"}),
        ("until",),
    ),
    (
        "campaign references",
        Sent("POST", "/api/v1/campaigns", body={"offer_id": "retired"}),
        Sent("POST", "/api/v1/campaigns", body={"offer_id": "live"}),
        ("offer_id",),
    ),
    (
        "campaign references",
        Sent("POST", "/api/v1/campaigns", body={"offer_id": "live", "segment_id": "gone"}),
        Sent("POST", "/api/v1/campaigns", body={"offer_id": "live", "segment_id": "s1"}),
        ("segment_id",),
    ),
    (
        "campaign references",
        Sent(
            "POST",
            "/api/v1/campaigns",
            body={"offer_id": "live", "filter": [], "sequence": {"steps": [{"kind": "task"}]}},
        ),
        Sent(
            "POST",
            "/api/v1/campaigns",
            body={"offer_id": "live", "filter": [], "sequence": {"steps": [{"kind": "touch"}]}},
        ),
        ("body",),
    ),
    (
        "campaign references",
        Sent(
            "POST",
            "/api/v1/campaigns",
            body={"offer_id": "live", "filter": [], "churn": {"churned_within_days": 1, "churned_before_days": 3}},
        ),
        Sent(
            "POST",
            "/api/v1/campaigns",
            body={"offer_id": "live", "filter": [], "churn": {"churned_within_days": 9, "churned_before_days": 3}},
        ),
        ("churn",),
    ),
    (
        "offer value by kind",
        Sent("POST", "/api/v1/offers", body={"kind": "discount_percent", "value": 120}),
        Sent("POST", "/api/v1/offers", body={"kind": "discount_amount", "value": 120}),
        ("body",),
    ),
    (
        "key scopes within the role",
        Sent("POST", "/api/v1/keys", body={"name": "k", "role": "agent", "scopes": ["keys:admin"]}),
        Sent("POST", "/api/v1/keys", body={"name": "k", "role": "admin", "scopes": ["keys:admin"]}),
        ("scopes",),
    ),
]


@pytest.mark.parametrize(("name", "breaking", "keeping", "fields"), CASES, ids=[c[0] for c in CASES])
def test_a_refusal_is_excused_only_for_the_request_that_breaks_the_named_rule(
    name: str, breaking: Sent, keeping: Sent, fields: tuple[str, ...]
) -> None:
    assert [rule.name for rule in excused_by(breaking, 422, refusal(*fields), LOOKUP)] == [name]
    assert excused_by(keeping, 422, refusal(*fields), LOOKUP) == []


@pytest.mark.parametrize(("name", "breaking", "keeping", "fields"), CASES, ids=[c[0] for c in CASES])
def test_a_refusal_naming_another_field_is_not_excused_even_for_a_breaking_request(
    name: str, breaking: Sent, keeping: Sent, fields: tuple[str, ...]
) -> None:
    assert excused_by(breaking, 422, refusal(*fields, "customer_id"), LOOKUP) == []
    assert excused_by(breaking, 422, {"status": 422}, LOOKUP) == []  # a 422 naming no field


def test_a_rule_excuses_nothing_on_another_route_or_method() -> None:
    reversed_window = {"since": SOON, "until": PAST}
    assert excused_by(Sent("GET", "/api/v1/alerts", query=reversed_window), 422, refusal("until"), LOOKUP) == []
    assert excused_by(Sent("DELETE", "/api/v1/audit", query=reversed_window), 422, refusal("until"), LOOKUP) == []
    assert excused_by(Sent("GET", "/api/v1/audit", query=reversed_window), 400, refusal("until"), LOOKUP) == []


def test_a_change_without_the_stored_version_is_excused_and_one_with_it_is_not() -> None:
    path, customer = "/api/v1/customers/{customer_id}", {"customer_id": "c1"}
    no_version = Sent("PATCH", path, customer, body={"name": "B"})
    assert excused_by(no_version, 428, refusal("header.if-match"), LOOKUP) != []
    stale = Sent("PATCH", path, customer, headers={"If-Match": '"2"'}, body={"name": "B"})
    assert excused_by(stale, 412, {"status": 412}, LOOKUP) != []
    current = Sent("PATCH", path, customer, headers={"If-Match": '"3"'}, body={"name": "B"})
    assert excused_by(current, 412, {"status": 412}, LOOKUP) == []
    assert excused_by(Sent("PATCH", path, customer, body={"version": 3}), 412, {"status": 412}, LOOKUP) == []
    # JSON has one number type: a version sent as 383.0 is the version 383, 3.0 the stored one.
    assert excused_by(Sent("PATCH", path, customer, body={"version": 383.0}), 412, {"status": 412}, LOOKUP) != []
    assert excused_by(Sent("PATCH", path, customer, body={"version": 3.0}), 412, {"status": 412}, LOOKUP) == []
    assert excused_by(stale, 422, refusal("if-match"), LOOKUP) == []  # only the statuses the rule answers


def test_every_exception_is_named_and_justified() -> None:
    names = [rule.name for rule in CROSS_FIELD_RULES]
    assert len(names) == len(set(names))
    assert all(rule.why and rule.fields and rule.methods for rule in CROSS_FIELD_RULES)
    assert {name for name, *_ in CASES} | {"version precondition"} == set(names)


def test_a_request_breaking_two_rules_is_excused_when_together_they_name_every_field() -> None:
    body = {"name": "A", "churned_at": "2000-01-01", "contacts": [{"kind": "email", "value": "0"}]}
    both = Sent("POST", "/api/v1/customers", body=body)
    rules = excused_by(both, 422, refusal("contacts[0]", "churned_at"), LOOKUP)
    assert {rule.name for rule in rules} == {"churn details by status", "contact value by kind"}
    one = Sent("POST", "/api/v1/customers", body={**body, "contacts": []})
    assert excused_by(one, 422, refusal("contacts[0]", "churned_at"), LOOKUP) == []  # contacts[0] unexplained
