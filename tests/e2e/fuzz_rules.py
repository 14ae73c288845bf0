"""The cross-field rules of the API fuzz: each names a rule the services enforce that JSON Schema, as the API
publishes it, cannot state (a value compared with another field's, with the server's clock, or with what is
stored), and says exactly which generated requests break it. tests/e2e/fuzz_hooks.py drops a "schema-valid request
rejected" failure only for a request that breaks a rule of its own route and only when the refusal names that
rule's fields; every other request of the route stays under the check.

Pure: what a rule reads of stored state comes through ``Lookup`` (the hooks ask the gateway; unit tests fake it)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import SPECIAL_USE_DOMAIN_NAMES

from gateway.routes import ROLE_PERMISSIONS

# Clocks of the fuzzer and the services are the same machine's, but a request takes time: a deadline this close to
# now is taken as already past (the service compares with its own, later, clock).
CLOCK_MARGIN = timedelta(seconds=30)
FUTURE_SKEW = timedelta(minutes=5)  # services/interaction/interactions/models.py MAX_FUTURE_SKEW


@dataclass(frozen=True, slots=True)
class Sent:
    """A generated request as the rules read it: the operation's path template and the values drawn."""

    method: str
    path: str
    path_parameters: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None

    def header(self, name: str) -> Any:
        return next((v for k, v in self.headers.items() if k.lower() == name), None)


class Lookup(Protocol):
    """Stored state a rule compares with, and what earlier responses of this run issued."""

    def get(self, path: str) -> Any:
        """The JSON of GET ``path`` (under /api/v1) as the fuzzing caller, or None when not 200."""

    def issued_cursors(self, path: str) -> Mapping[str, Mapping[str, Any]]:
        """next_cursor values answered on ``path`` in this run, each with the query that got it."""

    def idempotent_bodies(self, path: str, key: str) -> list[Any]:
        """Bodies accepted earlier in this run on ``path`` with this Idempotency-Key."""


@dataclass(frozen=True, slots=True)
class CrossFieldRule:
    name: str
    why: str
    paths: re.Pattern[str]
    methods: frozenset[str]
    fields: frozenset[str]  # the fields (top-level names) a refusal under this rule names
    statuses: frozenset[int]
    violated: Callable[[Sent, Lookup], bool]

    def applies(self, sent: Sent) -> bool:
        return sent.method.upper() in self.methods and bool(self.paths.match(sent.path))


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)  # no offset is UTC, as served


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _not_after(values: Mapping[str, Any], first: str, last: str, parse: Callable[[Any], Any]) -> bool:
    start, end = parse(values.get(first)), parse(values.get(last))
    return start is not None and end is not None and end <= start


def _body(sent: Sent) -> dict[str, Any]:
    return sent.body if isinstance(sent.body, dict) else {}


def email_domain_special_use(sent: Sent, _: Lookup) -> bool:
    """The e-mail's domain is a special-use name (RFC 6761: .test, .invalid, .localhost, ...), which the
    address validator refuses as undeliverable; JSON Schema's "email" format accepts any domain."""
    email = _body(sent).get("email")
    if not isinstance(email, str) or "@" not in email:
        return False
    domain = email.rsplit("@", 1)[1].lower().rstrip(".")
    return any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES)


def window_reversed(sent: Sent, _: Lookup) -> bool:
    return _not_after(sent.query, "since", "until", _instant)


def period_reversed(sent: Sent, _: Lookup) -> bool:
    return _not_after(sent.query, "from", "to", _day)


def instants_reversed(sent: Sent, _: Lookup) -> bool:
    return _not_after(sent.query, "from", "to", _instant)


def _cursor_not_issued(sent: Sent, lookup: Lookup, *, same: tuple[str, ...] = ()) -> bool:
    cursor = sent.query.get("cursor")
    if cursor is None:
        return False
    issued = lookup.issued_cursors(sent.path).get(str(cursor))
    return issued is None or any(issued.get(name) != sent.query.get(name) for name in same)


def audit_misfit(sent: Sent, lookup: Lookup) -> bool:
    return window_reversed(sent, lookup) or _cursor_not_issued(sent, lookup)


def customer_list_misfit(sent: Sent, lookup: Lookup) -> bool:
    with_offset = sent.query.get("cursor") is not None and sent.query.get("offset") not in (None, 0)
    return with_offset or _cursor_not_issued(sent, lookup, same=("sort",))


CHURN_DETAIL_STATUSES = ("churned", "won_back")


def churn_details_misfit(sent: Sent, _: Lookup) -> bool:
    body = _body(sent)
    status = body.get("status", "active")
    reason, churned_at = body.get("churn_reason"), body.get("churned_at")
    if status == "churned" and (reason is None or churned_at is None):
        return True
    if status not in CHURN_DETAIL_STATUSES and (reason is not None or churned_at is not None):
        return True
    day = _day(churned_at)
    return day is not None and day > datetime.now(UTC).date()


def status_details_misfit(sent: Sent, _: Lookup) -> bool:
    """A move to churned without its reason and date, another move with them, or a churn date in the future."""
    body = _body(sent)
    reason, churned_at = body.get("reason"), body.get("churned_at")
    if body.get("status") == "churned":
        if reason is None or churned_at is None:
            return True
    elif reason is not None or churned_at is not None:
        return True
    day = _day(churned_at)
    return day is not None and day > datetime.now(UTC).date()


def interaction_misfit(sent: Sent, _: Lookup) -> bool:
    """The fields each interaction type needs or may not carry (services/interaction/interactions/models.py)."""
    body = _body(sent)
    kind = body.get("type")
    missing = (
        (kind == "purchase" and body.get("amount") is None)
        or (body.get("amount") is not None and body.get("currency") is None)
        or (kind == "complaint" and body.get("severity") is None)
        or (kind == "survey" and (body.get("survey") is None or body.get("score") is None))
    )
    foreign = kind != "survey" and (body.get("survey") is not None or body.get("score") is not None)
    occurred = _instant(body.get("occurred_at"))
    future = occurred is not None and occurred > datetime.now(UTC) + FUTURE_SKEW - CLOCK_MARGIN
    return missing or foreign or future or _complaint_category(body) or _score_out_of_range(body)


COMPLAINT_CATEGORIES = ("product_quality", "service", "delivery", "billing", "staff", "other")


def _complaint_category(body: dict[str, Any]) -> bool:
    category = body.get("category")
    return body.get("type") == "complaint" and isinstance(category, str) and (
        category.strip().lower() not in COMPLAINT_CATEGORIES
    )  # fmt: skip


SURVEY_SCORES = {"nps": (0, 10), "csat": (1, 5)}


def _score_out_of_range(body: dict[str, Any]) -> bool:
    low_high, score = SURVEY_SCORES.get(str(body.get("survey"))), body.get("score")
    return low_high is not None and isinstance(score, int) and not low_high[0] <= score <= low_high[1]


# The parameters each rule kind needs (services/retention/rules/core.py validate).
RULE_PARAMS_NEEDED = {
    "churn_risk_above": ("threshold",),
    "p_alive_below": ("threshold", "tiers"),
    "risk_jump": ("delta", "within_days"),
    "severe_complaint": ("severities",),
}


def _params_misfit(kind: Any, params: Any) -> bool:
    params = params if isinstance(params, dict) else {}
    if any(params.get(name) in (None, []) for name in RULE_PARAMS_NEEDED.get(str(kind), ())):
        return True
    if kind == "low_survey" and params.get("nps_max") is None and params.get("csat_max") is None:
        return True
    threshold, high_at = params.get("threshold"), params.get("high_at")
    return kind == "churn_risk_above" and None not in (threshold, high_at) and high_at < threshold


def rule_misfit(sent: Sent, lookup: Lookup) -> bool:
    body = _body(sent)
    if sent.path.endswith("/preview"):
        if _not_after(body, "from", "to", _instant):
            return True
        rule = body.get("rule")
        return isinstance(rule, dict) and _params_misfit(rule.get("kind"), rule.get("params"))
    if sent.method.upper() == "POST":
        return _params_misfit(body.get("kind"), body.get("params"))
    if body.get("params") is None:
        return False
    stored = lookup.get(f"/rules/{sent.path_parameters.get('rule_id')}")
    return isinstance(stored, dict) and _params_misfit(stored.get("kind"), body["params"])


def setting_value_misfit(sent: Sent, lookup: Lookup) -> bool:
    """The value against the named setting's own json_schema, as GET /settings/{service} lists it."""
    import jsonschema_rs  # the fuzz's dependency (schemathesis brings it), not a service's

    service = sent.path.split("/")[4]
    listing = lookup.get(f"/settings/{service}")
    items = listing.get("items", []) if isinstance(listing, dict) else []
    schema = next((s.get("json_schema") for s in items if s.get("name") == sent.path_parameters.get("name")), None)
    if not isinstance(schema, dict):
        return False
    return not jsonschema_rs.validator_for(schema).is_valid(_body(sent).get("value"))


def points_misfit(sent: Sent, _: Lookup) -> bool:
    body = _body(sent)
    kind, amount = body.get("kind", "adjust"), body.get("amount")
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        return False
    return amount == 0 if kind == "adjust" else amount <= 0


def _time_zones(value: Any) -> list[str]:
    if isinstance(value, dict):
        zones = [v for k, v in value.items() if k == "timezone" and isinstance(v, str)]
        return zones + [z for v in value.values() for z in _time_zones(v)]
    if isinstance(value, list):
        return [z for v in value for z in _time_zones(v)]
    return []


def consent_misfit(sent: Sent, lookup: Lookup) -> bool:
    """A time zone the tz database does not know, quiet hours that start when they end, or a channel's
    consent given at a time in the future (services/customer/consent/service.py MAX_FUTURE)."""
    body = _body(sent)
    quiet = body.get("quiet_hours")
    empty = isinstance(quiet, dict) and quiet.get("start") is not None and quiet.get("start") == quiet.get("end")
    channels = body.get("channels")
    limit = datetime.now(UTC) + FUTURE_SKEW - CLOCK_MARGIN
    future = isinstance(channels, dict) and any(
        isinstance(c, dict) and (at := _instant(c.get("at"))) is not None and at > limit for c in channels.values()
    )
    return empty or future or unknown_zone(sent, lookup)


def contact_misfit(sent: Sent, _: Lookup) -> bool:
    """A contact whose value does not fit its kind: an e-mail address by the service's own parser (pydantic's
    validate_email), a phone number with a digit and at most 40 characters."""
    from pydantic import validate_email

    for contact in _body(sent).get("contacts") or []:
        if not isinstance(contact, dict) or not isinstance(contact.get("value"), str):
            continue
        kind, value = contact.get("kind"), contact["value"]
        if kind == "phone" and (len(value) > 40 or not any(c.isdigit() for c in value)):
            return True
        if kind == "email":
            try:
                validate_email(value)
            except ValueError:
                return True
    return False


def unknown_zone(sent: Sent, _: Lookup) -> bool:
    for zone in _time_zones(sent.body):
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return True
    return False


def idempotency_key_reused(sent: Sent, lookup: Lookup) -> bool:
    key = sent.header("idempotency-key")
    return key is not None and any(b != sent.body for b in lookup.idempotent_bodies(sent.path, str(key)))


def deadline_past(sent: Sent, _: Lookup) -> bool:
    until = _instant(_body(sent).get("until"))
    return until is not None and until <= datetime.now(UTC) + CLOCK_MARGIN


def campaign_reference_missing(sent: Sent, lookup: Lookup) -> bool:
    """The offer missing or retired, the saved segment missing, a churn window that ends before it starts, or a
    sequence without a touch step (the offer)."""
    body = _body(sent)
    offer_id, segment_id, sequence = body.get("offer_id"), body.get("segment_id"), body.get("sequence")
    if isinstance(offer_id, str):
        offer = lookup.get(f"/offers/{offer_id}")
        if not isinstance(offer, dict) or offer.get("active") is False:
            return True
    if isinstance(segment_id, str) and lookup.get(f"/segments/{segment_id}") is None:
        return True
    churn = body.get("churn") if isinstance(body.get("churn"), dict) else {}
    within, before = churn.get("churned_within_days"), churn.get("churned_before_days")
    if isinstance(within, int | float) and isinstance(before, int | float) and before >= within:
        return True
    steps = sequence.get("steps") if isinstance(sequence, dict) else None
    return isinstance(steps, list) and not any(isinstance(s, dict) and s.get("kind") == "touch" for s in steps)


def offer_value_misfit(sent: Sent, _: Lookup) -> bool:
    body = _body(sent)
    value = body.get("value")
    return body.get("kind") == "discount_percent" and (value is None or not 0 < value <= 100)


def scopes_outside_role(sent: Sent, _: Lookup) -> bool:
    body = _body(sent)
    scopes, role = body.get("scopes"), body.get("role", "integration")
    return isinstance(scopes, list) and not set(map(str, scopes)) <= ROLE_PERMISSIONS.get(str(role), frozenset())


ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


def version_not_stored(sent: Sent, lookup: Lookup) -> bool:
    """No If-Match and no version (428), or neither names the stored version (412)."""
    if_match, version = sent.header("if-match"), _body(sent).get("version")
    if if_match is None and version is None:
        return True
    accepted: set[int] | None = None
    if if_match is not None:
        parts = [p.strip() for p in str(if_match).split(",")]
        if "*" not in parts:
            accepted = {int(m.group(1)) for p in parts if (m := ETAG.match(p))}
    if isinstance(version, int | float) and not isinstance(version, bool) and float(version).is_integer():
        version = int(version)  # JSON has one number type: 383.0 is the version 383
        accepted = {version} if accepted is None else accepted & {version}
    if accepted is None:
        return False
    stored = lookup.get(f"/customers/{sent.path_parameters.get('customer_id')}")
    return isinstance(stored, dict) and stored.get("version") not in accepted
