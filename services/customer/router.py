"""HTTP routes of the customer service. Each route commits once; the domain functions never commit.

Concurrency: every customer response carries ``ETag: "<version>"``. PATCH needs ``If-Match`` with
that value (or a ``version`` field in the body): 428 without either, 412 when it is stale. The status
route takes an optional If-Match; DELETE (erasure) takes none, it applies to whatever version there is.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from servicekit.auth import PRINCIPAL_HEADER
from servicekit.deps import SessionDep
from servicekit.events.contracts.common import CustomerStatus
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error
from services.customer import attributes as attrs
from services.customer import service
from services.customer.models import (
    BulkImport,
    BulkReport,
    CustomerCreate,
    CustomerKind,
    CustomerPublic,
    CustomersPage,
    CustomerUpdate,
    ErasureStatus,
    StatusChangePublic,
    StatusChangeRequest,
    StatusHistoryPage,
)
from services.customer.settings import CustomerSettings

router = APIRouter(prefix="/customers", tags=["customers"])

ATTR_PREFIX = "attr."
_ETAG_VALUE = re.compile(r'^(?:W/)?"?(\d+)"?$')
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="makes a retried create safe: the same key and body replay the first answer",
    ),
]
IfMatchHeader = Annotated[str | None, Header(description='the ETag you read, e.g. "3"')]


def _settings(request: Request) -> CustomerSettings:
    return request.app.state.settings


def _with_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = service.etag(version)


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


# ---- collection ------------------------------------------------------------------------------------------


@router.post(
    "",
    response_model=CustomerPublic,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "external_ref already taken (nothing about that customer is told)"}},
)
async def create_customer(
    data: CustomerCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> CustomerPublic:
    # Who the gateway acted for (signed with the internal credential): Idempotency-Keys are per caller.
    caller = request.headers.get(PRINCIPAL_HEADER, "")
    for attempt in (1, 2):
        try:
            result = await service.create_customer(
                session=session, data=data, idempotency_key=idempotency_key, caller=caller
            )
            await session.commit()
            break
        except IntegrityError:
            # A concurrent request took the same external_ref or key first; the retry finds its result
            # (a replay of the key, or the 409 for the external_ref).
            await session.rollback()
            if attempt == 2:
                raise Problem(
                    409, "Conflict", "A concurrent request created the same customer; retry.", code="conflict"
                ) from None
    response.status_code = result.status_code
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/customers/{result.customer.id}"
    _with_etag(response, result.customer.version)
    return CustomerPublic.of(result.customer)


@router.get("", response_model=CustomersPage)
async def list_customers(
    request: Request,
    session: SessionDep,
    status_: Annotated[
        list[CustomerStatus] | None, Query(alias="status", description="repeat to match any of several")
    ] = None,
    kind: CustomerKind | None = None,
    segment: str | None = None,
    owner: Annotated[list[str] | None, Query(description="account manager; repeat to match any of several")] = None,
    external_ref: str | None = None,
    tag: Annotated[list[str] | None, Query(description="repeat to require several tags")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="name or e-mail contains")] = None,
    include_erased: bool = False,
    sort: Annotated[str, Query(pattern=r"^-?(created_at|name)$")] = "-created_at",
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> CustomersPage:
    """Customers matching every filter given. Attribute filters: ``attr.<name>=<value>`` (repeatable for
    several attributes); ``attr.seats=10`` matches the number 10 or the string "10", ``attr.vip=true``
    the boolean or the string. Erased customers are left out unless ``include_erased=true``.

    Page with ``limit`` and ``offset``, or follow ``next_cursor`` (with the same filters and sort);
    a cursor does not drift when customers are added meanwhile.
    """
    if cursor is not None and offset:
        raise Problem(
            422, "Invalid request", code="validation", errors=[field_error("query.offset", "not with a cursor")]
        )
    attribute_filters: list[tuple[str, str]] = []
    for name, value in request.query_params.multi_items():
        if name.startswith(ATTR_PREFIX):
            key = name[len(ATTR_PREFIX) :]
            if not attrs.KEY_PATTERN.match(key):
                raise Problem(
                    422,
                    "Invalid request",
                    code="validation",
                    errors=[field_error(f"query.{name}", f"attribute names are {attrs.KEY_RULE}")],
                )
            attribute_filters.append((key, value))
    filters = service.CustomerFilters(
        statuses=status_ or (),
        kind=kind.value if kind else None,
        segment=segment,
        owners=owner or (),
        external_ref=external_ref,
        tags=tag or (),
        attributes=attribute_filters,
        q=q,
        include_erased=include_erased,
    )
    items, total, next_cursor = await service.list_customers(
        session=session, filters=filters, sort=sort, limit=limit, offset=offset, cursor=cursor
    )
    return CustomersPage(
        items=[CustomerPublic.of(c) for c in items], total=total, limit=limit, offset=offset, next_cursor=next_cursor
    )


@router.post("/bulk", response_model=BulkReport, response_model_exclude_none=True)
async def bulk_import(data: BulkImport, session: SessionDep) -> BulkReport:
    """Up to 5000 customers (each as for POST /customers) with a report per row, in request order.

    ``created`` rows are new; ``existing`` rows matched a known external_ref (also one earlier in the
    same request) and carry that customer's id; ``rejected`` rows carry their errors and wrote nothing.
    """
    report = await service.bulk_import(session=session, rows=data.rows)
    await session.commit()
    return report


# ---- one customer ---------------------------------------------------------------------------------------------


@router.get(
    "/{customer_id}",
    response_model=CustomerPublic,
    responses={304: {"description": "If-None-Match named the current ETag"}},
)
async def get_customer(
    customer_id: str,
    session: SessionDep,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> CustomerPublic | Response:
    """The customer. An erased customer is still answered (200), anonymised, with ``erased_at`` set."""
    customer = await service.get_customer(session=session, customer_id=customer_id)
    if if_none_match is not None:
        versions = parse_if_match(if_none_match)
        if versions is None or customer.version in versions:
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": service.etag(customer.version)})
    _with_etag(response, customer.version)
    return CustomerPublic.of(customer)


@router.patch("/{customer_id}", response_model=CustomerPublic)
async def update_customer(
    customer_id: str, patch: CustomerUpdate, session: SessionDep, response: Response, if_match: IfMatchHeader = None
) -> CustomerPublic:
    expected = expected_versions(if_match, patch.version, required=True)
    try:
        customer, _ = await service.update_customer(
            session=session, customer_id=customer_id, patch=patch, expected=expected
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Problem(
            409,
            "External reference taken",
            code="conflict",
            errors=[field_error("external_ref", "already used by another customer")],
        ) from None
    _with_etag(response, customer.version)
    return CustomerPublic.of(customer)


@router.delete(
    "/{customer_id}",
    response_model=ErasureStatus,
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "personal data erased here; Location: the erasure receipts"}},
)
async def erase_customer(customer_id: str, request: Request, session: SessionDep, response: Response) -> ErasureStatus:
    """GDPR erasure: removes the personal data now and asks every service to erase theirs.

    Accepted (202) because the other services confirm later; follow Location to see their receipts.
    Repeating it is harmless.
    """
    settings = _settings(request)
    await service.erase_customer(
        session=session, customer_id=customer_id, keep_attributes=settings.erasure_keep_attributes
    )
    await session.commit()
    receipt = await service.erasure_status(
        session=session, customer_id=customer_id, expected_services=settings.erasure_services
    )
    response.headers["Location"] = f"/customers/{customer_id}/erasure"
    return receipt


@router.get("/{customer_id}/erasure", response_model=ErasureStatus)
async def erasure_receipts(customer_id: str, request: Request, session: SessionDep) -> ErasureStatus:
    """Which services have confirmed the customer's erasure; ``complete`` once all expected ones have."""
    return await service.erasure_status(
        session=session, customer_id=customer_id, expected_services=_settings(request).erasure_services
    )


@router.post("/{customer_id}/status", response_model=CustomerPublic)
async def change_status(
    customer_id: str,
    body: StatusChangeRequest,
    session: SessionDep,
    response: Response,
    if_match: IfMatchHeader = None,
) -> CustomerPublic:
    """Move the customer along prospect -> active -> churned -> won_back (-> churned ...).

    Churning needs ``reason`` and ``churned_at``. A move outside the lifecycle is a 409 saying why.
    """
    customer = await service.change_status(
        session=session,
        customer_id=customer_id,
        request=body,
        expected=expected_versions(if_match, None, required=False),
    )
    await session.commit()
    _with_etag(response, customer.version)
    return CustomerPublic.of(customer)


@router.get("/{customer_id}/status-history", response_model=StatusHistoryPage)
async def status_history(
    customer_id: str,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> StatusHistoryPage:
    """The customer's status changes, newest first (the first one is the status it was created in)."""
    items, total = await service.status_history(session=session, customer_id=customer_id, limit=limit, offset=offset)
    return StatusHistoryPage(
        items=[StatusChangePublic.model_validate(i, from_attributes=True) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )
