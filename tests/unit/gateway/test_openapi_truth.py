"""The merged document says what the platform answers: problem statuses, Allow, NUL and path-segment rules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.keys import ApiKeyCreate
from gateway.openapi import NO_NUL_PATTERN, SEGMENT_PATTERN, documented_methods, merge

SERVICE_DOC: dict[str, Any] = {
    "paths": {
        "/customers": {"get": {"responses": {"200": {}}}, "post": {"responses": {"201": {}}}},
        "/customers/bulk": {"post": {"responses": {"200": {}}}},
        "/customers/{customer_id}": {
            "get": {
                "parameters": [{"name": "customer_id", "in": "path", "schema": {"type": "string"}}],
                "responses": {"200": {}},
            }
        },
    },
    "components": {
        "schemas": {
            "Thing": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "tier": {"type": "string", "enum": ["gold"]}},
            }
        }
    },
}


def _merged() -> dict[str, Any]:
    return merge({"paths": {}}, {"customer": SERVICE_DOC})


def test_every_public_operation_documents_the_problem_statuses() -> None:
    responses = _merged()["paths"]["/api/v1/customers"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "409", "410", "422", "429", "503", "504"):
        assert responses[status]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }


def test_allow_lists_the_documented_methods_of_the_matching_template() -> None:
    doc = _merged()
    assert documented_methods(doc, "/api/v1/customers") == ["GET", "HEAD", "POST"]
    assert documented_methods(doc, "/api/v1/customers/bulk") == ["POST"]  # the literal beats {customer_id}
    assert documented_methods(doc, "/api/v1/customers/c-1") == ["GET", "HEAD"]
    assert documented_methods(doc, "/api/v1/nothing/here") is None


def test_free_strings_and_property_names_refuse_nul_and_path_ids_refuse_what_the_gateway_refuses() -> None:
    doc = _merged()
    thing = doc["components"]["schemas"]["Thing"]
    assert thing["propertyNames"] == {"pattern": NO_NUL_PATTERN}
    assert thing["properties"]["name"]["pattern"] == NO_NUL_PATTERN
    assert "pattern" not in thing["properties"]["tier"]
    assert re.match(NO_NUL_PATTERN, "ab") and not re.match(NO_NUL_PATTERN, "a\x00b")
    parameter = doc["paths"]["/api/v1/customers/{customer_id}"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"] == SEGMENT_PATTERN
    for good in ("c-1", "default-churn", "a b", "x.y"):
        assert re.match(SEGMENT_PATTERN, good)
    for bad in (".", "..", "a/b", "a%b", "a;b", "a\\b", "a\x01"):
        assert not re.match(SEGMENT_PATTERN, bad)


def test_a_key_expiry_is_date_time_text_not_a_number() -> None:
    assert ApiKeyCreate(name="k", expires_at="2027-01-01T00:00:00Z").expires_at is not None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RFC 3339"):
        ApiKeyCreate(name="k", expires_at=0)  # type: ignore[arg-type]


def test_an_optional_header_is_text_or_absent_never_null() -> None:
    null = {"type": "null"}
    headers = [
        {"name": "if-match", "in": "header", "schema": {"anyOf": [{"type": "string", "pattern": "^[0-9]+$"}, null]}},
        {"name": "x-both", "in": "header", "schema": {"anyOf": [{"type": "string"}, {"type": "integer"}, null]}},
        {"name": "q", "in": "query", "schema": {"anyOf": [{"type": "string"}, null]}},
    ]
    service = {"paths": {"/customers/{customer_id}": {"patch": {"parameters": headers, "responses": {"200": {}}}}}}
    doc = merge({"paths": {}}, {"customer": service})
    if_match, both, query = doc["paths"]["/api/v1/customers/{customer_id}"]["patch"]["parameters"]
    assert if_match["schema"] == {"type": "string", "pattern": "^[0-9]+$"}
    assert both["schema"]["anyOf"] == [{"type": "string", "pattern": NO_NUL_PATTERN}, {"type": "integer"}]
    assert {"type": "null"} in query["schema"]["anyOf"]  # a query parameter may be left out as null
