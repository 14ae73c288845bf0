"""Surveys sent as touches: a one-time signed link per allowed survey touch, answered at a public route.

The link is retention's (it is the touch that made it); the answer leaves as survey.responded (outbox,
same transaction) and the interaction service records it as a survey interaction, so the customer is
rescored and may raise alerts as any survey answer does. Domain functions only: they never commit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.retention import SurveyRequested, SurveyResponded
from servicekit.clock import utc_now
from servicekit.problems import Problem, field_error
from services.retention.db import new_id
from services.retention.settings import get_settings
from services.retention.surveys import survey_links
from services.retention.surveys.models import SurveyAnswer, SurveyLink, SurveyQuestion

log = logging.getLogger("retention.surveys")
SURVEY_ACTIONS = frozenset({"satisfaction_survey"})  # step kinds whose allowed touch sends a survey link
SURVEY_KINDS = ("nps", "csat")  # the question a link asks: NPS 0-10 or CSAT 1-5


def new_link(
    session: AsyncSession,
    *,
    customer_id: str,
    alert_id: str | None,
    task_id: str,
    channel: str,
    now: datetime,
    survey: str | None = None,
) -> SurveyRequested:
    """A link for an allowed survey touch (added to the session) and the event that hands it to the sender.
    `survey`: the touch's question (nps or csat); none: the configured RETENTION_SURVEY_KIND."""
    settings = get_settings()
    expires_at = (now + timedelta(days=settings.survey_link_ttl_days)).replace(microsecond=0)
    link = SurveyLink(
        id=new_id(),
        customer_id=customer_id,
        alert_id=alert_id,
        task_id=task_id,
        survey=survey or settings.survey_kind,
        channel=channel,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(link)
    token = survey_links.issue(settings.survey_link_secret, link.id, int(expires_at.timestamp()))
    return SurveyRequested(
        link_id=link.id,
        customer_id=customer_id,
        alert_id=alert_id,
        task_id=task_id,
        survey=link.survey,
        channel=channel,
        token=token,
        expires_at=expires_at,
        at=now,
    )


def _gone(status: int, title: str, detail: str, code: str) -> Problem:
    return Problem(status, title, detail, code=code)


def _unknown() -> Problem:
    # A forged, malformed or unknown token: nothing is told about why (nor about any customer).
    return _gone(404, "Survey not found", "This survey link is not valid.", "not_found")


async def _link(session: AsyncSession, token: str, now: datetime) -> SurveyLink:
    settings = get_settings()
    try:
        link_id = survey_links.read(settings.survey_link_secret, token, now=int(now.timestamp()))
    except survey_links.InvalidToken as exc:
        if exc.why is survey_links.Invalid.expired:
            raise _gone(410, "Survey expired", "This survey link has expired.", "expired") from None
        log.info("survey token refused", extra={"why": exc.why.value})
        raise _unknown() from None
    link = await session.get(SurveyLink, link_id)
    if link is None:
        raise _unknown()  # signed but gone: the customer was erased
    return link


async def question(*, session: AsyncSession, token: str) -> SurveyQuestion:
    now = utc_now()
    link = await _link(session, token, now)
    if link.answered_at is not None:
        raise _gone(409, "Survey answered", "This survey has been answered already.", "answered")
    low, high = survey_links.SCALES[link.survey]
    return SurveyQuestion(
        survey=link.survey, min=low, max=high, dimensions=list(survey_links.DIMENSIONS), expires_at=link.expires_at
    )


async def answer(*, session: AsyncSession, token: str, body: SurveyAnswer) -> SurveyResponded:
    """Record the one answer of a link; 409 when it was answered before, 410 after expiry, 404 for a
    token this service did not sign. The answer and its survey.responded event commit together."""
    now = utc_now()
    link = await _link(session, token, now)
    problems = survey_links.check_answer(link.survey, body.score, body.dimensions)
    if problems:
        raise Problem(
            422, "Invalid request", code="validation", errors=[field_error(field, msg) for field, msg in problems]
        )
    # One answer per link, also under concurrent submissions: only the first UPDATE finds it unanswered.
    result = await session.execute(
        update(SurveyLink)
        .where(col(SurveyLink.id) == link.id, col(SurveyLink.answered_at).is_(None))
        .values(answered_at=now, score=body.score, dimensions=dict(body.dimensions))
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise _gone(409, "Survey answered", "This survey has been answered already.", "answered")
    return SurveyResponded(
        link_id=link.id,
        customer_id=link.customer_id,
        survey=link.survey,
        score=body.score,
        dimensions=dict(body.dimensions),
        answered_at=now,
    )


async def erase(*, session: AsyncSession, customer_id: str) -> None:
    """Erasure: unanswered links go (they can no longer be answered); answered ones stay as anonymous scores."""
    await session.execute(
        delete(SurveyLink).where(col(SurveyLink.customer_id) == customer_id, col(SurveyLink.answered_at).is_(None))
    )
