"""HTTP routes of the interaction service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request, Response, status

from servicekit.deps import SessionDep
from servicekit.events.contracts.common import InteractionType
from servicekit.problems import Problem, field_error
from services.interaction import service
from services.interaction.directory import close_customer_directory, customer_directory
from services.interaction.models import InteractionCreate, InteractionPublic, InteractionsPublic
from services.interaction.settings import InteractionSettings


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
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
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
