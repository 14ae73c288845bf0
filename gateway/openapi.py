"""One OpenAPI document for the whole public API, merged from the services' own documents.

Each service's /openapi.json is fetched (signed, like any call) and cached for GATEWAY_OPENAPI_CACHE_S.
Its paths are published under /api/v1 exactly where the route table sends them (internal routes such as
/health are left out); schema names that two services use for different shapes get the service's name
as a prefix. The gateway adds its own paths (360 view, API keys, health), the security schemes, and on
every operation the permission it needs (``x-permission``) and the gateway's own error answers.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.routes import API_PREFIX, ROLE_PERMISSIONS, permission_for, resolve
from gateway.upstream import UpstreamError, Upstreams, current_request_id, default_timeout
from gateway.upstream_headers import upstream_request_headers
from servicekit.pagination import MAX_OFFSET, MAX_PAGE

log = logging.getLogger("gateway.openapi")

REF_PREFIX = "#/components/schemas/"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM_SCHEMA = "Problem"

DESCRIPTION = (
    """\
The public API of the customer-retention platform. Every path is served by the gateway, which routes
it to the owning service.

**Authentication.** People send `Authorization: Bearer <JWT>` (issuer, audience and expiry are checked);
integrations send `X-API-Key: crmk_...` (or the key as a Bearer token). Locally:
`python -m gateway token --sub alice --role agent`. Each operation lists the permission it needs under
`x-permission`; roles: """
    + "; ".join(f"**{role}**" for role in ROLE_PERMISSIONS)
    + """. Agents see only customers they own, managers their team's (token claim `team`).

**Conventions.** Lists answer `{"items": [...], "total": n, "limit": l, "offset": o}` with `limit` at most
"""
    + f"{MAX_PAGE} and `offset` at most {MAX_OFFSET:,}"
    + """ (`?limit=&offset=`); filters are query parameters named after the field, repeatable to match any
of several values (`?status=open&status=acknowledged`, `?owner=anna&owner=ben`). Errors are RFC 9457
`application/problem+json`; validation errors list each field under `errors` (a NUL character, U+0000,
is refused in any field). A change that a concurrent request overtook answers 409: read again, retry.
Every response carries `X-Request-ID`. Over the caller's quota the answer is 429 with `Retry-After`.
"""
)


def problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Problem",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "required": ["type", "title", "status"],
    }


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF_PREFIX + PROBLEM_SCHEMA}}},
    }


GATEWAY_ERRORS = {
    "400": "the request cannot be read: a body that is not JSON, or a path segment no resource id may hold",
    "401": "missing or invalid credentials",
    "403": "the caller's role does not allow this",
    "413": "request body too large",
    "429": "over the caller's rate limit (see Retry-After)",
    "502": "the service sent an invalid response",
    "503": "the service is unavailable",
    "504": "the service did not answer in time",
}

# Answers any operation may give besides the gateway's own: the object named is unknown (or not the caller's
# to see), a concurrent change overtook it or the object's state refuses it, its customer was erased, or
# a field is invalid (each one named under errors).
SERVICE_ERRORS = {
    "404": "no such object, or not one the caller may see",
    "409": "conflict: a concurrent change overtook this one, or the object's state does not allow it",
    "410": "the customer's data was erased",
    "412": "If-Match names a version the object is no longer at: read it again",
    "428": "a change that needs the version read (If-Match, or a version field) came without it",
    "422": "invalid request: each offending field under errors",
}


# A path segment the gateway accepts (gateway.canonical): printable ASCII without '/', '\\', '%' or ';',
# not starting with a dot (so never a dot segment).
SEGMENT_PATTERN = r"^[ -$&-\-0-:<-\[\]-~][ -$&-.0-:<-\[\]-~]*$"


# No field, query parameter or property name may hold a NUL character (servicekit.validation).
NO_NUL_PATTERN = "^[^\\u0000]*$"
_LEAF_KEYS = ("pattern", "enum", "const", "format")


def _refuse_nul(node: Any) -> None:
    """Pure, in place: every free string schema gets the no-NUL pattern, every object schema the same on its
    property names, so the document says what the platform accepts."""
    if isinstance(node, list):
        for item in node:
            _refuse_nul(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not any(key in node for key in _LEAF_KEYS):
        node["pattern"] = NO_NUL_PATTERN
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        node.setdefault("propertyNames", {"pattern": NO_NUL_PATTERN})
    for key, value in node.items():
        if key not in ("propertyNames", "example", "examples", "default"):
            _refuse_nul(value)


def _constrain_path_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema")
        if parameter.get("in") == "path" and isinstance(schema, dict) and schema.get("type") == "string":
            schema.setdefault("pattern", SEGMENT_PATTERN)


def _headers_are_text(operation: dict[str, Any]) -> None:
    """A header is text or absent, never null: an optional header's ``anyOf [..., null]`` loses the null branch
    (a generated client would otherwise send the text "null")."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema")
        if parameter.get("in") != "header" or not isinstance(schema, dict) or "anyOf" not in schema:
            continue
        kept = [branch for branch in schema["anyOf"] if branch != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                name = value[len(REF_PREFIX) :]
                out[key] = REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge(gateway_doc: dict[str, Any], services: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Pure: the gateway's own document plus each service's public paths and schemas."""
    doc = copy.deepcopy(gateway_doc)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    unavailable = []
    for service, service_doc in services.items():
        if service_doc is None:
            unavailable.append(service)
            continue
        own_schemas = service_doc.get("components", {}).get("schemas", {})
        renames = {}
        for name, schema in own_schemas.items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service.capitalize()}{name}"
        own_schemas = _rewrite_refs(own_schemas, renames)
        for name, schema in own_schemas.items():
            schemas[renames.get(name, name)] = schema
        for path, item in service_doc.get("paths", {}).items():
            public = API_PREFIX + path
            resolved = resolve(public)
            if resolved is None or resolved.service != service:
                continue  # internal (health, metrics) or answered by another service or the gateway
            paths[public] = _rewrite_refs(item, renames)
    schemas.setdefault(PROBLEM_SCHEMA, problem_schema())
    doc.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, item in paths.items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            if not path.startswith(API_PREFIX + "/"):
                operation["security"] = []  # health, metrics: public
                continue
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            rule = permission_for(method.upper(), path)
            if rule is not None:
                operation["x-permission"] = rule.permission
            _constrain_path_parameters(operation)
            _headers_are_text(operation)
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                # FastAPI documents its default shape; every part of the platform answers problem+json.
                responses["422"] = _problem_response("invalid request: each offending field under errors")
            for status, description in (SERVICE_ERRORS | GATEWAY_ERRORS).items():
                responses.setdefault(status, _problem_response(description))
            operation["responses"] = dict(sorted(responses.items()))
    _refuse_nul(schemas)
    for item in paths.values():
        for method in METHODS:
            operation = item.get(method)
            if operation is not None:
                _refuse_nul(operation.get("parameters", []))
                _refuse_nul(operation.get("requestBody", {}))
    doc["paths"] = dict(sorted(paths.items()))
    if unavailable:
        doc.setdefault("info", {})["x-unavailable"] = sorted(unavailable)
    return doc


def documented_methods(doc: dict[str, Any], path: str) -> list[str] | None:
    """Pure: the methods the document lists for the path template ``path`` matches (``{name}`` = one
    segment; a literal segment beats a parameter), upper case and sorted; None when no template matches."""
    segments = path.rstrip("/").split("/")
    best: tuple[int, list[str]] | None = None
    for template, item in doc.get("paths", {}).items():
        parts = template.split("/")
        if len(parts) != len(segments):
            continue
        if not all(
            p == s or (p.startswith("{") and p.endswith("}") and s) for p, s in zip(parts, segments, strict=True)
        ):
            continue
        literal = sum(not p.startswith("{") for p in parts)
        methods = sorted(m.upper() for m in METHODS if m in item)
        if best is None or literal > best[0]:
            best = (literal, methods)
    if best is None:
        return None
    methods = best[1]
    if "GET" in methods and "HEAD" not in methods:
        methods = sorted([*methods, "HEAD"])
    return methods


class MergedOpenApi:
    """The merged document, rebuilt at most every ``ttl_s`` seconds (sooner when a service was missing)."""

    def __init__(self, app: FastAPI, upstreams: Upstreams, ttl_s: float) -> None:
        self.app = app
        self.upstreams = upstreams
        self.ttl_s = ttl_s
        self._doc: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def gateway_document(self) -> dict[str, Any]:
        return get_openapi(
            title=self.app.title,
            version=self.app.version,
            description=DESCRIPTION,
            routes=self.app.routes,
        )

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        headers = upstream_request_headers([("accept", "application/json")], request_id=current_request_id())
        timeout = default_timeout(self.upstreams.settings, self.upstreams.settings.ready_timeout_s)
        try:
            response = await self.upstreams.send(service, "GET", "/openapi.json", headers=headers, timeouts=timeout)
        except UpstreamError:
            return None
        if response.status_code != 200:
            log.warning("service OpenAPI unavailable", extra={"upstream": service, "status_code": response.status_code})
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if self._doc is not None and now < self._expires:
                return self._doc
            services = list(self.upstreams.urls)
            fetched = await asyncio.gather(*(self._fetch(s) for s in services))
            doc = merge(self.gateway_document(), dict(zip(services, fetched, strict=True)))
            self._doc = doc
            # A partial document is retried soon; a complete one is kept for the full TTL.
            self._expires = now + (self.ttl_s if all(fetched) else min(self.ttl_s, 5.0))
            return doc
