"""The CLI's copy of the services' row rules stays in step with the services' own models."""

from enum import StrEnum

import pytest

from cli import schema
from services.customer import lifecycle
from services.customer import models as customer_models
from services.interaction.complaints import workflow as complaints
from services.interaction.interactions import models as interaction_models


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (schema.CustomerKind, customer_models.CustomerKind),
        (schema.CustomerStatus, customer_models.CustomerStatus),
        (schema.ChurnReason, lifecycle.ChurnReason),
        (schema.InteractionType, interaction_models.InteractionType),
        (schema.Initiator, interaction_models.Initiator),
        (schema.Severity, interaction_models.Severity),
        (schema.SurveyKind, interaction_models.SurveyKind),
        (schema.ComplaintCategory, complaints.ComplaintCategory),
    ],
)
def test_enumerations_match_the_services(ours: type[StrEnum], theirs: type[StrEnum]):
    assert [e.value for e in ours] == [e.value for e in theirs]


def test_the_limits_match_the_services():
    from services.customer import attributes

    assert schema.MAX_ATTRIBUTES == attributes.MAX_ATTRIBUTES
    assert schema.MAX_ATTRIBUTE_STRING == attributes.MAX_STRING
    assert schema.MAX_TAGS == customer_models.MAX_TAGS
    assert schema.TEXT_MAX == interaction_models.TEXT_MAX
    assert schema.ATTRIBUTE_KEY.pattern == attributes.KEY_PATTERN.pattern
    assert {str(k): v for k, v in schema.SCORE_RANGES.items()} == {
        str(k): v for k, v in interaction_models.SCORE_RANGES.items()
    }
