"""The named exceptions of the API fuzz's positive-data check: one per cross-field rule the services enforce and
JSON Schema, as the API publishes it, cannot state. Each names its route, the requests that break it (the
predicates in tests/e2e/fuzz_rules.py) and the fields its refusal names; tests/e2e/fuzz_hooks.py drops a
"schema-valid request rejected" failure only where ``excused_by`` finds one, so every other request of the route
stays under the check."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.e2e.fuzz_rules import (
    CrossFieldRule,
    Lookup,
    Sent,
    audit_misfit,
    campaign_reference_missing,
    churn_details_misfit,
    consent_misfit,
    contact_misfit,
    customer_list_misfit,
    deadline_past,
    email_domain_special_use,
    idempotency_key_reused,
    instants_reversed,
    interaction_misfit,
    offer_value_misfit,
    period_reversed,
    points_misfit,
    rule_misfit,
    scopes_outside_role,
    setting_value_misfit,
    status_details_misfit,
    version_not_stored,
    window_reversed,
)


def _rule(
    name: str,
    why: str,
    *,
    paths: str,
    methods: str,
    fields: str,
    violated: Callable[[Sent, Lookup], bool],
    statuses: tuple[int, ...] = (422,),
) -> CrossFieldRule:
    return CrossFieldRule(
        name=name,
        why=why,
        paths=re.compile(paths),
        methods=frozenset(methods.split()),
        fields=frozenset(fields.split()),
        statuses=frozenset(statuses),
        violated=violated,
    )


WINDOW = "until must lie after since: two values of one request compared"
CROSS_FIELD_RULES = (
    _rule(
        "audit window and cursor",
        WINDOW + "; a cursor is valid only as the gateway issued it (no pattern says which text is a position)",
        paths=r"^/api/v1/audit$",
        methods="GET",
        fields="until cursor",
        violated=audit_misfit,
    ),
    _rule(
        "timeline window",
        WINDOW,
        paths=r"^/api/v1/(customers/[^/]+/)?interactions$",
        methods="GET",
        fields="until",
        violated=window_reversed,
    ),
    _rule(
        "interaction fields by type",
        "amount for a purchase, currency with an amount, severity and a complaint category for a complaint, survey "
        "and score (in the kind's range) for a survey only, occurred_at not in the future: values tied to the "
        "type's value or to the server's clock",
        paths=r"^/api/v1/interactions$",
        methods="POST",
        fields="amount currency severity category survey score occurred_at",
        violated=interaction_misfit,
    ),
    _rule(
        "report period",
        "the period [from, to) must not be empty or reversed",
        paths=r"^/api/v1/reports/",
        methods="GET",
        fields="to",
        violated=period_reversed,
    ),
    _rule(
        "metrics period",
        "to must lie after from",
        paths=r"^/api/v1/retention/metrics$",
        methods="GET",
        fields="to",
        violated=instants_reversed,
    ),
    _rule(
        "rule params by kind",
        "the params a rule's kind needs (risk_jump: delta and within_days, ...; on PATCH the stored rule's kind); "
        "a preview's to after from",
        paths=r"^/api/v1/rules(/[^/]+)?(/preview)?$",
        methods="POST PATCH",
        fields="params rule to",
        violated=rule_misfit,
    ),
    _rule(
        "setting value by name",
        "a run-time setting's value has the named setting's own type and bounds; one body schema cannot say which "
        "type goes with the name in the path",
        paths=r"^/api/v1/settings/[^/]+/[^/]+$",
        methods="PUT",
        fields="value",
        violated=setting_value_misfit,
    ),
    _rule(
        "churn details by status",
        "churned_at and churn_reason with status churned (required) or won_back only, churned_at not after today",
        paths=r"^/api/v1/customers$",
        methods="POST",
        fields="churned_at churn_reason",
        violated=churn_details_misfit,
    ),
    _rule(
        "contact value by kind",
        "an e-mail contact holds an address the service's e-mail parser accepts, a phone contact a number (a "
        "digit, at most 40 characters): the value's rule is chosen by the kind beside it",
        paths=r"^/api/v1/customers(/[^/]+)?$",
        methods="POST PATCH",
        fields="contacts",
        violated=contact_misfit,
    ),
    _rule(
        "customer cursor",
        "a cursor is valid only as this service issued it (a signed position, for the same sort), not with an offset",
        paths=r"^/api/v1/customers$",
        methods="GET",
        fields="cursor offset",
        violated=customer_list_misfit,
    ),
    _rule(
        "points amount by kind",
        "an adjustment must not be zero; an earn, redeem or expiry must be positive",
        paths=r"^/api/v1/customers/[^/]+/points$",
        methods="POST",
        fields="amount body",
        violated=points_misfit,
    ),
    _rule(
        "consent preferences",
        "a time-zone name the server's tz database knows (the set differs between tzdata releases); quiet hours "
        "whose end differs from their start (two values of one object compared); a channel's `at` not in the "
        "future by the server's clock",
        paths=r"^/api/v1/customers/[^/]+/consent$",
        methods="PUT",
        fields="timezone quiet_hours channels",
        violated=consent_misfit,
    ),
    _rule(
        "Idempotency-Key reused",
        "a key already answered for another request is refused: stored state",
        paths=r"^/api/v1/customers(/(consent|status)/bulk)?$",
        methods="POST",
        fields="idempotency-key",
        violated=idempotency_key_reused,
    ),
    _rule(
        "snooze deadline",
        "until must lie in the future by the server's clock",
        paths=r"^/api/v1/alerts/[^/]+/snooze$",
        methods="POST",
        fields="until",
        violated=deadline_past,
    ),
    _rule(
        "campaign references",
        "offer_id must name a stored offer that is not retired and segment_id a stored segment (stored state); the "
        "churn filter's churned_before_days below its churned_within_days (two values compared); a campaign's "
        "sequence needs a touch step (the steps' schema is the playbooks' too, where none is needed)",
        paths=r"^/api/v1/campaigns$",
        methods="POST",
        fields="offer_id segment_id churn body",
        violated=campaign_reference_missing,
    ),
    _rule(
        "offer value by kind",
        "a percent discount needs a value above 0 and at most 100",
        paths=r"^/api/v1/offers$",
        methods="POST",
        fields="body value",
        violated=offer_value_misfit,
    ),
    _rule(
        "key scopes within the role",
        "a key's scopes must be permissions of its role, a value of the same body",
        paths=r"^/api/v1/keys$",
        methods="POST",
        fields="scopes",
        violated=scopes_outside_role,
    ),
    _rule(
        "status change details",
        "a move to churned needs its reason and date, any other move takes neither, and the date is not in the "
        "future: fields required or refused by the value of status",
        paths=r"^/api/v1/customers/[^/]+/status$",
        methods="POST",
        fields="reason churned_at",
        violated=status_details_misfit,
    ),
    _rule(
        "e-mail domain special-use",
        "an address at a special-use domain (RFC 6761, e.g. .test or .invalid) is refused as undeliverable; the "
        "document's email format cannot name the domains the address validator reserves",
        paths=r"^/api/v1/customers(/[^/]+)?$",
        methods="POST PATCH",
        fields="email",
        violated=email_domain_special_use,
    ),
    _rule(
        "version precondition",
        "a change needs the version read (If-Match or a version field): 428 without, 412 when not the stored one",
        paths=r"^/api/v1/customers/[^/]+(/status)?$",
        methods="PATCH POST",
        fields="if-match version",
        violated=version_not_stored,
        statuses=(412, 428),
    ),
)


def _field_names(errors: Any) -> set[str]:
    names: set[str] = set()
    for error in errors if isinstance(errors, list) else []:
        text = str(error.get("field", "")) if isinstance(error, dict) else ""
        text = re.sub(r"^(query|header|path|body)\.", "", text)
        names.add(re.split(r"[.\[]", text, maxsplit=1)[0] or "body")
    return names


def excused_by(sent: Sent, status: int, problem: Any, lookup: Lookup) -> list[CrossFieldRule]:
    """The cross-field rules of this route that the request breaks, when together they name every field the
    refusal names (a request may break two, each reported); empty when the refusal stands."""
    errors = problem.get("errors") if isinstance(problem, dict) else None
    named = _field_names(errors)
    if status == 422 and not named:  # a 422 names its fields; one that names none is no rule's
        return []
    broken = [r for r in CROSS_FIELD_RULES if status in r.statuses and r.applies(sent) and r.violated(sent, lookup)]
    covered = set().union(*(rule.fields for rule in broken))
    return broken if broken and named <= covered else []
