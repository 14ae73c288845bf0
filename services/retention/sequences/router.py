"""Sequence routes: a customer's enrolments in playbook sequences, one enrolment, and stopping it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from servicekit.deps import SessionDep
from servicekit.pagination import DEFAULT_PAGE, Limit, Offset
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.models import EnrolmentPublic, EnrolmentsPublic, EnrolmentStop

router = APIRouter(tags=["sequences"])


@router.get("/customers/{customer_id}/enrolments", response_model=EnrolmentsPublic)
async def customer_enrolments(
    customer_id: str, session: SessionDep, limit: Limit = DEFAULT_PAGE, offset: Offset = 0
) -> EnrolmentsPublic:
    """The customer's enrolments in playbook sequences, newest first: the step reached, the next step's due
    time, the steps passed (``trail``: created, sent or blocked) and why it stopped."""
    items, total = await sequence_engine.list_enrolments(
        session=session, customer_id=customer_id, limit=limit, offset=offset
    )
    return EnrolmentsPublic(
        items=[EnrolmentPublic.model_validate(e) for e in items], total=total, limit=limit, offset=offset
    )


@router.get("/enrolments/{enrolment_id}", response_model=EnrolmentPublic)
async def get_enrolment(enrolment_id: str, session: SessionDep) -> EnrolmentPublic:
    return EnrolmentPublic.model_validate(
        await sequence_engine.get_enrolment(session=session, enrolment_id=enrolment_id)
    )


@router.post("/enrolments/{enrolment_id}/stop", response_model=EnrolmentPublic)
async def stop_enrolment(
    enrolment_id: str, session: SessionDep, body: Annotated[EnrolmentStop | None, Body()] = None
) -> EnrolmentPublic:
    """Stop the sequence for this customer now: no further step runs. Stopping a finished one changes nothing."""
    reason = body.reason if body is not None else "manual"
    enrolment = await sequence_engine.stop(session=session, enrolment_id=enrolment_id, reason=reason)
    await session.commit()
    return EnrolmentPublic.model_validate(enrolment)
