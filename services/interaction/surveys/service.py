"""Answers to survey links (retention's survey.responded) -> survey interactions of the customer.

Idempotent by the link (external id ``survey-link:<link id>``), so a redelivered answer adds nothing; the
interaction's survey.answered event rescores the customer as any survey answer does. Never commits.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.common import InteractionType
from contracts.retention import SurveyResponded
from servicekit.inbox import PoisonEvent
from services.interaction.interactions.models import Initiator, Interaction, InteractionCreate
from services.interaction.interactions.store import get_interaction, store_one, stored_external_ids
from services.interaction.replica.models import KnownCustomer


def external_id(link_id: str) -> str:
    return f"survey-link:{link_id}"


async def record_response(
    *, session: AsyncSession, data: SurveyResponded, sla_hours: Mapping[str, float]
) -> Interaction:
    customer = await session.get(KnownCustomer, data.customer_id)
    if customer is None or customer.erased:
        # Links are made only for customers retention knew; an erased one's unanswered links are deleted.
        raise PoisonEvent("survey.responded for a customer unknown here or erased")
    create = InteractionCreate(
        customer_id=data.customer_id,
        type=InteractionType.survey,
        channel="survey_link",
        initiated_by=Initiator.customer,
        survey=data.survey,
        score=data.score,
        occurred_at=data.answered_at,
        external_id=external_id(data.link_id),
    )
    stored = await stored_external_ids(session, [create.external_id or ""])
    if create.external_id in stored:
        return await get_interaction(session=session, interaction_id=stored[create.external_id][0])
    interaction, _ = await store_one(session, create, sla_hours, stored)
    return interaction
