"""HTTP routes of complaints: the list, one complaint with its steps, and moving it through its workflow."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import StringConstraints

from contracts.common import Severity
from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.interaction.complaints import service
from services.interaction.complaints.models import (
    ComplaintListItem,
    ComplaintPublic,
    ComplaintsPublic,
    ComplaintStepPublic,
    ComplaintTransition,
)
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.complaints.workflow import ComplaintCategory
from services.interaction.interactions.models import InteractionPublic

router = APIRouter(tags=["interactions"])


@router.get("/complaints", response_model=ComplaintsPublic, tags=["complaints"])
async def list_complaints(
    session: SessionDep,
    status: Annotated[list[ComplaintStatus] | None, Query(description="repeat to match any of several")] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    category: Annotated[list[ComplaintCategory] | None, Query()] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    owner: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None,
        Query(description="the customer's account manager; repeat to match any of several"),
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="true: past due while still open, acknowledged or valid; false: the others")
    ] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> ComplaintsPublic:
    """Complaints, the earliest due first, each with its customer's owner."""
    items, total = await service.list_complaints(
        session=session,
        statuses=status or (),
        severities=severity or (),
        categories=[c.value for c in category or ()],
        customer_id=customer_id,
        owners=owner or (),
        overdue=overdue,
        limit=limit,
        offset=offset,
    )
    return ComplaintsPublic(
        items=[ComplaintListItem(**InteractionPublic.of(i).model_dump(), owner=owner) for i, owner in items],
        total=total,
        limit=limit,
        offset=offset,
    )


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
