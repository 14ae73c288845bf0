"""HTTP routes of the ERP/SCM integration: the events parked until their customer is known."""

from typing import Annotated

from fastapi import APIRouter, Query

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.interaction.inbound import service
from services.interaction.inbound.models import ParkedEventPublic, ParkedEventsPublic

router = APIRouter(tags=["interactions"])


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
