"""HTTP routes of the customer service. Each route commits once; the domain functions never commit.

Concurrency: every customer response carries ``ETag: "<version>"``. PATCH needs ``If-Match`` with
that value (or a ``version`` field in the body): 428 without either, 412 when it is stale. The status
route takes an optional If-Match; DELETE (erasure) takes none, it applies to whatever version there is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from contracts.common import CustomerStatus
from servicekit.auth import PRINCIPAL_HEADER
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error
from services.customer.customers import attributes as attrs
from services.customer.customers import bulk, listing, service
from services.customer.customers.models import (
    BulkImport,
    BulkReport,
    CustomerCreate,
    CustomerKind,
    CustomerPublic,
    CustomersPage,
    CustomerUpdate,
)
from services.customer.http import IdempotencyKeyHeader, IfMatchHeader, expected_versions, parse_if_match, with_etag

router = APIRouter(prefix="/customers", tags=["customers"])

ATTR_PREFIX = "attr."


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
    with_etag(response, result.customer.version)
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
    filters = listing.CustomerFilters(
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
    items, total, next_cursor = await listing.list_customers(
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
    report = await bulk.bulk_import(session=session, rows=data.rows)
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
    with_etag(response, customer.version)
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
    with_etag(response, customer.version)
    return CustomerPublic.of(customer)
