"""The public survey routes: no login (the gateway rate-limits them per address), a one-time token each.

They answer about the survey only, never about the customer: a forged or unknown token is a 404, an
expired one 410, an answered one 409.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from servicekit.deps import SessionDep
from servicekit.unit_of_work import UnitOfWork
from services.retention.publishing import publish
from services.retention.reports import facts as read_model
from services.retention.surveys import service as surveys
from services.retention.surveys.models import SurveyAnswer, SurveyQuestion, SurveyReceipt

router = APIRouter(prefix="/surveys/respond", tags=["surveys"])
ANSWERS = {
    404: {"description": "not a survey link this platform signed"},
    409: {"description": "answered already (one answer per link)"},
    410: {"description": "the link has expired"},
}


@router.get("/{token}", response_model=SurveyQuestion, responses=ANSWERS)
async def survey_question(token: str, session: SessionDep) -> SurveyQuestion:
    """The survey a link asks: NPS (0-10) or CSAT (1-5), with the dimensions product, service_support and
    relationship."""
    return await surveys.question(session=session, token=token)


@router.post("/{token}", response_model=SurveyReceipt, status_code=status.HTTP_202_ACCEPTED, responses=ANSWERS)
async def answer_survey(token: str, body: SurveyAnswer, session: SessionDep) -> SurveyReceipt:
    """Answer the survey once: an overall ``score`` and optional ``dimensions`` on the same scale. The
    answer becomes a survey interaction of the customer (through survey.responded)."""
    event = await surveys.answer(session=session, token=token, body=body)
    await read_model.on_link_answer(session, event)  # the dimension scores, for the satisfaction report
    await publish(UnitOfWork(session), event)
    await session.commit()
    return SurveyReceipt()
