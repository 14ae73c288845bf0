"""survey.responded (a survey link answered) -> one survey interaction of the customer, rescoring it."""

from datetime import UTC, datetime

import pytest

from contracts.retention import SurveyResponded
from servicekit.inbox import PoisonEvent
from tests.unit.interaction.conftest import outbox_events
from tests.unit.interaction.test_erp_inbound import handle, inbound, interactions, received_created

AT = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def responded(customer_id: str = "c-1", link_id: str = "l-1", score: int = 4) -> SurveyResponded:
    return SurveyResponded(
        link_id=link_id, customer_id=customer_id, survey="nps", score=score, dimensions={"product": 3}, answered_at=AT
    )


async def test_an_answer_becomes_one_survey_interaction(database):
    await handle(database, received_created("c-1", "ERP-7"), inbound(responded()), inbound(responded()))
    [answer] = await interactions(database)
    assert (answer.customer_id, answer.type, answer.survey, answer.score, answer.external_id) == (
        "c-1",
        "survey",
        "nps",
        4,
        "survey-link:l-1",
    )
    assert answer.initiated_by == "customer" and answer.occurred_at == AT
    [event] = [e for e in await outbox_events(database) if e["type"] == "survey.answered"]
    assert (event["key"], event["data"]["score"]) == ("c-1", 4)


async def test_an_answer_for_an_unknown_customer_is_poison(database):
    with pytest.raises(PoisonEvent):
        await handle(database, inbound(responded("nobody")))
