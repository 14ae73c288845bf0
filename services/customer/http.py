"""What the customer routes share: the ETag and If-Match handling, the Idempotency-Key header, the settings."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Header, Request, Response

from servicekit.problems import Problem, field_error
from services.customer.customers.service import etag
from services.customer.settings import CustomerSettings

_ETAG_VALUE = re.compile(r'^(?:W/)?"?(\d+)"?$')
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="makes a retried create safe: the same key and body replay the first answer",
    ),
]
# `*` or a comma-separated list of the ETags this service gives (`"3"`, also weak or unquoted); anything else
# is refused (422 naming the header) rather than read as matching no version.
IF_MATCH_PATTERN = r'^[ \t]*(\*|(W/)?"?[0-9]{1,18}"?([ \t]*,[ \t]*(W/)?"?[0-9]{1,18}"?)*)[ \t]*$'
IfMatchHeader = Annotated[
    str | None, Header(pattern=IF_MATCH_PATTERN, description='the ETag you read, e.g. "3" (or * for any version)')
]


def settings_of(request: Request) -> CustomerSettings:
    return request.app.state.settings


def with_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def parse_if_match(value: str) -> frozenset[int] | None:
    """The versions an If-Match header accepts; None for ``*`` (any). Unparseable tags match nothing."""
    versions: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if part == "*":
            return None
        match = _ETAG_VALUE.match(part)
        if match:
            versions.add(int(match.group(1)))
    return frozenset(versions)


def expected_versions(if_match: str | None, body_version: int | None, *, required: bool) -> frozenset[int] | None:
    """Combine If-Match and a body version into the versions the change may apply to.

    Both given: the version must satisfy both. Neither: 428 if required, else any version.
    """
    if if_match is None and body_version is None:
        if required:
            raise Problem(
                428,
                "Precondition required",
                'Send If-Match with the ETag you read (e.g. If-Match: "3"), or a version field.',
                code="precondition_required",
                errors=[field_error("header.if-match", "required (or a version field in the body)")],
            )
        return None
    versions = parse_if_match(if_match) if if_match is not None else None
    if body_version is not None:
        versions = frozenset({body_version}) if versions is None else versions & {body_version}
    return versions
