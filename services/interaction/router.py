"""HTTP routes of the interaction service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request, Response, status

from servicekit.deps import SessionDep
from servicekit.events.contracts.common import InteractionType, Severity
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error
from services.interaction import service
from services.interaction.complaints import ComplaintCategory
from services.interaction.directory import close_customer_directory, customer_directory
from services.interaction.models import (
    BulkInteractions,
    BulkReport,
    ComplaintPublic,
    ComplaintsPublic,
    ComplaintStepPublic,
    ComplaintTransition,
    InteractionCreate,
    InteractionPublic,
    InteractionsPublic,
    ParkedEventPublic,
    ParkedEventsPublic,
)
from services.interaction.settings import InteractionSettings
from services.interaction.sla import ComplaintStatus


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Merged into the app's lifespan by include_router: closes the customer-service client on shutdown.
    yield
    await close_customer_directory(app)


router = APIRouter(tags=["interactions"], lifespan=lifespan)


@router.post(
    "/interactions",
    response_model=InteractionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "A repeat of an earlier request with the same external_id"}},
)
async def record_interaction(
    data: InteractionCreate, session: SessionDep, request: Request, response: Response
) -> InteractionPublic:
    settings: InteractionSettings = request.app.state.settings
    interaction, created = await service.record_interaction(
        session=session,
        data=data,
        sla_hours=settings.complaint_sla_hours,
        lookup=customer_directory(request.app).fetch,
    )
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/interactions/{interaction.id}"
    return InteractionPublic.of(interaction)


@router.post("/interactions/bulk", response_model=BulkReport)
async def import_interactions(body: BulkInteractions, session: SessionDep, request: Request) -> BulkReport:
    """Import up to 5,000 interactions at once, e.g. history from another system.

    Each row is validated on its own and reported by its index: `created`, `existing` (its external_id
    was imported before; nothing written) or `rejected` with the errors naming the fields. The good rows
    are stored in one transaction with their events, the same events as single posts.
    """
    settings: InteractionSettings = request.app.state.settings
    report = await service.bulk_import(
        session=session,
        items=body.rows,
        sla_hours=settings.complaint_sla_hours,
        lookup_many=customer_directory(request.app).fetch_many,
    )
    await session.commit()
    return report


@router.get("/interactions/{interaction_id}", response_model=InteractionPublic)
async def get_interaction(interaction_id: str, session: SessionDep) -> InteractionPublic:
    return InteractionPublic.of(await service.get_interaction(session=session, interaction_id=interaction_id))


@router.get("/customers/{customer_id}/interactions", response_model=InteractionsPublic)
async def customer_timeline(
    customer_id: str,
    session: SessionDep,
    type: Annotated[list[InteractionType] | None, Query(description="repeat to match any of several")] = None,
    since: Annotated[datetime | None, Query(description="occurred at or after (no offset = UTC)")] = None,
    until: Annotated[datetime | None, Query(description="occurred before (no offset = UTC)")] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> InteractionsPublic:
    """The customer's interactions, newest first. An id the service has not seen yields an empty page."""
    if since is not None and until is not None and service.as_utc(since) >= service.as_utc(until):
        raise Problem(
            422,
            "Invalid request",
            "until must lie after since.",
            code="validation",
            errors=[field_error("until", "must lie after since")],
        )
    items, total = await service.list_customer_interactions(
        session=session, customer_id=customer_id, types=type or (), since=since, until=until, limit=limit, offset=offset
    )
    return InteractionsPublic(items=[InteractionPublic.of(i) for i in items], total=total, limit=limit, offset=offset)


# ---- complaints -----------------------------------------------------------------------------------


@router.get("/complaints", response_model=ComplaintsPublic, tags=["complaints"])
async def list_complaints(
    session: SessionDep,
    status: Annotated[list[ComplaintStatus] | None, Query(description="repeat to match any of several")] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    category: Annotated[list[ComplaintCategory] | None, Query()] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    overdue: Annotated[
        bool | None, Query(description="true: past due while still open, acknowledged or valid; false: the others")
    ] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ComplaintsPublic:
    """Complaints, the earliest due first."""
    items, total = await service.list_complaints(
        session=session,
        statuses=status or (),
        severities=severity or (),
        categories=[c.value for c in category or ()],
        customer_id=customer_id,
        overdue=overdue,
        limit=limit,
        offset=offset,
    )
    return ComplaintsPublic(items=[InteractionPublic.of(i) for i in items], total=total, limit=limit, offset=offset)


async def _complaint_public(session: SessionDep, complaint_id: str) -> ComplaintPublic:
    complaint = await service.get_complaint(session=session, complaint_id=complaint_id)
    steps = await service.complaint_steps(session=session, complaint_id=complaint_id)
    return ComplaintPublic(
        **InteractionPublic.of(complaint).model_dump(),
        steps=[ComplaintStepPublic.model_validate(step, from_attributes=True) for step in steps],
    )


@router.get("/complaints/{complaint_id}", response_model=ComplaintPublic, tags=["complaints"])
async def get_complaint(complaint_id: str, session: SessionDep) -> ComplaintPublic:
    return await _complaint_public(session, complaint_id)


@router.post(
    "/complaints/{complaint_id}/transitions",
    response_model=ComplaintPublic,
    tags=["complaints"],
    responses={409: {"description": "The workflow does not allow this step from the current status"}},
)
async def transition_complaint(complaint_id: str, change: ComplaintTransition, session: SessionDep) -> ComplaintPublic:
    """Move a complaint one step: open -> acknowledged -> valid | rejected; valid -> resolved (with the
    resolution) -> followed_up -> closed; rejected -> closed. Emits complaint.updated."""
    await service.transition_complaint(session=session, complaint_id=complaint_id, change=change)
    await session.commit()
    return await _complaint_public(session, complaint_id)


# ---- ERP/SCM integration ----------------------------------------------------------------------------


@router.get("/integrations/parked", response_model=ParkedEventsPublic, tags=["integrations"])
async def list_parked_events(
    session: SessionDep,
    customer_ref: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    event_type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ParkedEventsPublic:
    """Inbound ERP/SCM events waiting for their customer to appear, oldest first."""
    items, total = await service.list_parked(
        session=session, customer_ref=customer_ref, event_type=event_type, limit=limit, offset=offset
    )
    return ParkedEventsPublic(items=[ParkedEventPublic.of(p) for p in items], total=total, limit=limit, offset=offset)
