"""HTTP routes of interactions: record one, import many, read one, a customer's timeline."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from contracts.common import InteractionType
from servicekit.db import Database
from servicekit.deps import SessionDep
from servicekit.direct import direct
from servicekit.driver import usable
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from servicekit.problems import Problem, field_error
from servicekit.types import UtcDatetime, as_utc
from services.interaction.interactions import bulk, service, store
from services.interaction.interactions.models import (
    BulkInteractions,
    BulkReport,
    Interaction,
    InteractionCreate,
    InteractionPublic,
    InteractionsPublic,
)
from services.interaction.interactions.store import Draft
from services.interaction.replica.directory import customer_directory
from services.interaction.settings import InteractionSettings, cached_complaint_sla_hours, complaint_sla_hours

router = APIRouter(tags=["interactions"])


@router.post(
    "/interactions",
    response_model=InteractionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "A repeat of an earlier request with the same external_id"}},
)
@direct
async def record_interaction(data: InteractionCreate, request: Request) -> Response:
    # The busiest route: called directly in its plain case (servicekit.direct), its session opened here
    # rather than by a dependency, and its answer the response model serialized once, so the framework
    # neither routes, solves dependencies nor validates the answer again. The schema (response_model
    # above) and the bytes are those of the other routes.
    settings: InteractionSettings = request.app.state.settings
    database: Database = request.app.state.database
    # The common case (a known active customer, a new external_id) runs on the driver's connection without
    # a session (on PostgreSQL one statement; on a SQLite file the session's statements on the sqlite3
    # connection); when it wrote nothing, the session's path takes the checks.
    sla_hours = cached_complaint_sla_hours(settings) if usable(database.engine) else None
    recorded = None if sla_hours is None else await service.record_common_case(database, data, sla_hours)
    if recorded is not None:
        return _recorded(recorded, created=True)
    async with database.sessions() as session:
        interaction, created = await service.record_interaction(
            session=session,
            data=data,
            sla_hours=await complaint_sla_hours(session, settings),
            lookup=customer_directory(request.app).fetch,
            common_case_tried=sla_hours is not None,
        )
        await session.commit()
    return _recorded(interaction, created=created)


def _recorded(interaction: Interaction | Draft, *, created: bool) -> Response:
    """The answer to a recorded interaction: the response model serialized once."""
    if isinstance(interaction, Draft):
        public = InteractionPublic.of_values(vars(interaction))
    else:
        public = InteractionPublic.of(interaction)
    return Response(
        InteractionPublic.__pydantic_serializer__.to_json(public),  # model_dump_json's bytes, not re-encoded
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        headers={"Location": f"/interactions/{interaction.id}"},
        media_type="application/json",
    )


@router.post("/interactions/bulk", response_model=BulkReport)
async def import_interactions(body: BulkInteractions, session: SessionDep, request: Request) -> Response:
    """Import up to 5,000 interactions at once, e.g. history from another system.

    Each row is validated on its own and reported by its index: `created`, `existing` (its external_id
    was imported before; nothing written) or `rejected` with the errors naming the fields. The good rows
    are stored in one transaction with their events, the same events as single posts.
    """
    settings: InteractionSettings = request.app.state.settings
    report = await bulk.bulk_import(
        session=session,
        items=body.rows,
        sla_hours=await complaint_sla_hours(session, settings),
        lookup_many=customer_directory(request.app).fetch_many,
    )
    await session.commit()
    # Serialized once: the framework would dump the report, validate it again and encode it (per row).
    return Response(report.model_dump_json().encode(), media_type="application/json")


@router.get("/interactions/{interaction_id}", response_model=InteractionPublic)
async def get_interaction(interaction_id: str, session: SessionDep) -> InteractionPublic:
    return InteractionPublic.of(await store.get_interaction(session=session, interaction_id=interaction_id))


@router.get("/customers/{customer_id}/interactions", response_model=InteractionsPublic)
async def customer_timeline(
    customer_id: str,
    session: SessionDep,
    type: Annotated[list[InteractionType] | None, Query(description="repeat to match any of several")] = None,
    since: Annotated[UtcDatetime | None, Query(description="occurred at or after (no offset = UTC)")] = None,
    until: Annotated[UtcDatetime | None, Query(description="occurred before (no offset = UTC)")] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> InteractionsPublic:
    """The customer's interactions, newest first. An id the service has not seen yields an empty page."""
    if since is not None and until is not None and as_utc(since) >= as_utc(until):
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
