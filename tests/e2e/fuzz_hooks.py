"""Schemathesis hooks of the API fuzz (tests/e2e/test_gateway_security.py), loaded by the schemathesis process
through SCHEMATHESIS_HOOKS: the fuzzed rules and playbooks stay inert, and named exceptions drop a failure only
where the rule is one the document does not state as a schema or the request on the wire was valid after all."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.utils import parameter_types, sent_text_is_valid

from tests.e2e.fuzz_exceptions import excused_by
from tests.e2e.fuzz_rules import Sent

FUZZ_INERT = re.compile(r"^/api/v1/(rules|playbooks)(/[^/]+)?$")

# A sequence step of a playbook refers to another step of the same sequence by its id (a branch's then/else
# names a later step; ids are unique within the sequence): a reference between array items, which JSON Schema
# cannot state (uniqueItems compares whole items, and no keyword ties a value to a sibling item's property).
# positive_data_acceptance only, on these routes only, and only when every error the 422 names is such a reference.
PLAYBOOK_PATHS = re.compile(r"^/api/v1/(playbooks(/[^/]+)?|campaigns)$")  # a campaign's sequence too
STEP_REFERENCE = re.compile(r"steps\[\d+\]\.(then: no step |else: no step |then: .* is not a later step|"
                            r"else: .* is not a later step|id: .* is used twice)")  # fmt: skip

# A survey question kind (`survey`: nps or csat) belongs to a satisfaction_survey action only, on a sequence's touch
# step, a follow-up schedule and a follow-up trigger: a rule between two properties of one object. JSON Schema could
# say it with if/then, but neither the generated TypeScript client nor the fuzzer's data generation reads if/then,
# so the field's description states it. positive_data_acceptance only, on these routes only, and only when every
# error the 422 names is this rule.
SURVEY_PATHS = re.compile(
    r"^/api/v1/(playbooks(/[^/]+)?|campaigns|followup-schedules/[^/]+|followup-triggers/[^/]+/[^/]+)$"
)
SURVEY_ONLY = re.compile(r"survey: only a satisfaction_survey (touch|follow-up) asks a survey question")


# The platform refuses a NUL character (U+0000) anywhere in a request (PostgreSQL text cannot hold it). The document
# states it on every string and property name it types (a no-NUL pattern) and in words for the rest (info.description);
# where it leaves a value free (`{}`: any JSON, such as a rule's params; or a property it does not declare, which
# the service ignores) a recursive "JSON without NUL" schema would give every generated client's model an index
# signature. positive_data_acceptance only, and only when each NUL the 422 names sits in such a free value.
NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character"


def _resolve(schema: Any, document: dict[str, Any]) -> Any:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
    return schema


def _free(schema: Any) -> bool:
    shaping = ("type", "anyOf", "oneOf", "allOf", "properties", "items", "enum", "const", "pattern")
    return schema is True or (isinstance(schema, dict) and not any(key in schema for key in shaping))


def _nul_only_where_free(value: Any, schema: Any, document: dict[str, Any]) -> bool:
    """Whether every NUL in ``value`` (a string or a property name) lies inside a value ``schema`` leaves free."""
    schema = _resolve(schema, document)
    if _free(schema):
        return True
    branches = [b for key in ("anyOf", "oneOf", "allOf") for b in schema.get(key, [])]
    if branches:
        return any(_nul_only_where_free(value, branch, document) for branch in branches)
    if isinstance(value, str):
        return NUL not in value
    if isinstance(value, list):
        return all(_nul_only_where_free(item, schema.get("items", True), document) for item in value)
    if isinstance(value, dict):
        declared = schema.get("properties", {})
        for key, item in value.items():
            inner = declared.get(key, schema.get("additionalProperties", True))
            if NUL in key and (key in declared or "propertyNames" in schema or not _free(_resolve(inner, document))):
                return False
            if not _nul_only_where_free(item, inner, document):
                return False
    return True


def _nul_in_a_free_value(case: Any, response: Any) -> bool:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    if not errors or not all(NUL_MESSAGE in str(error.get("message", "")) for error in errors):
        return False
    document = case.operation.schema.raw_schema
    body = case.operation.definition.raw.get("requestBody", {})
    schema = _resolve(body, document).get("content", {}).get("application/json", {}).get("schema")
    if schema is None or (case.query and any(NUL in f"{k}{v}" for k, v in case.query.items())):
        return False
    return _nul_only_where_free(case.body, schema, document)


@schemathesis.hook
def map_body(context: object, body: object) -> object:
    """Rules and playbooks are fuzzed too, but created and changed disabled: the platform is shared by the whole e2e
    session, and an enabled fuzzed rule would raise alerts (a fuzzed playbook add tasks) other tests count."""
    operation = getattr(context, "operation", None)
    if isinstance(body, dict) and operation is not None and FUZZ_INERT.match(operation.path):
        return {**body, "enabled": False}
    return body


@schemathesis.hook
def map_path_parameters(context: object, path_parameters: dict[str, object]) -> dict[str, object]:
    """The seeded rules and playbooks (ids "default-...", the documented examples) are read but never
    changed or deleted by the fuzzer: later tests of the shared session raise alerts through them."""
    operation = getattr(context, "operation", None)
    if not path_parameters or operation is None or operation.method.upper() in ("GET", "HEAD"):
        return path_parameters
    return {
        name: f"fuzzed-{value}" if isinstance(value, str) and value.startswith("default-") else value
        for name, value in path_parameters.items()
    }


def _only_errors_matching(response: Any, *rules: re.Pattern[str]) -> bool:
    """Whether the 422 names errors and each is one of the named cross-field rules (a mix of them counts too)."""
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return False
    messages = [str(error.get("message", "")) for error in errors]
    return bool(messages) and all(any(rule.search(message) for rule in rules) for message in messages)


def _query_on_the_wire_is_valid(case: Any, response: Any) -> bool:
    """Whether every query parameter, as the text the request carried, satisfies its schema. A query string holds
    text only: a number or an object drawn as a "wrong type" for a repeatable text filter (?team=) reaches the
    service as valid text, which it rightly accepts."""
    meta = case.meta
    if meta is None or any(
        info.mode.is_negative for location, info in meta.components.items() if location != ParameterLocation.QUERY
    ):
        return False  # another part of the request is invalid too: the check stands
    sent = parse_qs(urlsplit(response.request.url).query, keep_blank_values=True)
    for parameter in case.operation.get_parameter_set(ParameterLocation.QUERY).items:
        values = sent.get(parameter.name)
        if values is None:
            if parameter.is_required:
                return False
            continue
        validator = parameter.get_validator()
        types = parameter_types(_inlined(parameter.validation_schema))
        if "array" in types:
            if not validator.is_valid(values):
                return False
        elif len(values) != 1 or not sent_text_is_valid(values[0], validator.is_valid, types):
            return False
    return True


def _inlined(schema: Any) -> Any:
    """The parameter's schema with its bundled references put in place: parameter_types reads a `$ref` branch
    (an enum such as a task status) as "any type", array included, which made a single valid text look like
    an invalid array."""
    bundled = schema.get("x-bundled", {}) if isinstance(schema, dict) else {}

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/x-bundled/") and ref.rsplit("/", 1)[1] in bundled:
                return inline(bundled[ref.rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items() if key != "x-bundled"}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)


# What this run's responses issued, for the rules that compare with it (tests/e2e/fuzz_rules.py).
_CURSORS: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
_IDEMPOTENT: dict[tuple[str, str], list[Any]] = defaultdict(list)


def sent_of(case: Any) -> Sent:
    body = case.body if isinstance(case.body, dict | list | str | int | float | bool) else None
    return Sent(
        method=case.method,
        path=case.operation.path,
        path_parameters=dict(case.path_parameters or {}),
        query=dict(case.query or {}),
        headers=dict(case.headers or {}),
        body=body,
    )


class GatewayLookup:
    """Stored state as the fuzzing caller reads it through the gateway, and what this run's responses issued."""

    def __init__(self, response: Any) -> None:
        url = urlsplit(response.request.url)
        self._base = f"{url.scheme}://{url.netloc}/api/v1"
        self._auth = response.request.headers.get("Authorization", "")

    def get(self, path: str) -> Any:
        # Generated ids hold any character (control characters too): percent-encode them as a client would.
        answer = httpx.get(self._base + quote(path, safe="/"), headers={"Authorization": self._auth}, timeout=10)
        return answer.json() if answer.status_code == 200 else None

    def issued_cursors(self, path: str) -> Mapping[str, Mapping[str, Any]]:
        return _CURSORS[path]

    def idempotent_bodies(self, path: str, key: str) -> list[Any]:
        return _IDEMPOTENT[(path, key)]


@schemathesis.hook
def after_call(context: object, case: Any, response: Any) -> None:
    """Records the cursors and Idempotency-Keys the platform accepted, for the rules that refer to them."""
    if not 200 <= response.status_code < 300:
        return
    sent = sent_of(case)
    key = sent.header("idempotency-key")
    if key is not None:
        _IDEMPOTENT[(sent.path, str(key))].append(sent.body)
    try:
        cursor = response.json().get("next_cursor")
    except (ValueError, AttributeError):
        return
    if isinstance(cursor, str):
        _CURSORS[sent.path][cursor] = sent.query


@schemathesis.hook
def filter_failure(context: object, failure: object, case: Any, response: Any) -> bool:
    """False drops the failure; each exception is named above or in fuzz_rules.py and scoped to one check."""
    if isinstance(failure, RejectedPositiveData):
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if excused_by(sent_of(case), response.status_code, problem, GatewayLookup(response)):
            return False
    if isinstance(failure, RejectedPositiveData) and response.status_code == 422:
        if _nul_in_a_free_value(case, response):
            return False
        path = case.operation.path
        cross_field = ((PLAYBOOK_PATHS, STEP_REFERENCE), (SURVEY_PATHS, SURVEY_ONLY))
        named = [rule for paths, rule in cross_field if paths.match(path)]
        return not (named and _only_errors_matching(response, *named))
    if isinstance(failure, AcceptedNegativeData):
        return not _query_on_the_wire_is_valid(case, response)
    return True
