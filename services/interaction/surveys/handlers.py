"""crm.retention.v1 survey.responded -> a survey interaction (surveys/service.py), once per link."""

from contracts.retention import SurveyResponded
from servicekit.events.envelope import Received
from servicekit.inbox import Handlers
from servicekit.unit_of_work import UnitOfWork
from services.interaction.settings import complaint_sla_hours
from services.interaction.surveys import service


async def on_survey_responded(uow: UnitOfWork, event: Received[SurveyResponded]) -> None:
    # Duplicate-safe: the interaction's external id is the link's.
    await service.record_response(
        session=uow.session, data=event.data, sla_hours=await complaint_sla_hours(uow.session)
    )


HANDLERS: Handlers = {SurveyResponded.event_type: on_survey_responded}
