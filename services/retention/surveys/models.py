"""Survey links sent as touches, and what a respondent sees and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlmodel import Field

from services.retention.db import (
    RetentionTable,
    UtcDatetime,
    at_field,
    json_field,
    new_id,
)


class SurveyLink(RetentionTable, table=True):
    """A one-time survey link sent as a touch; the token is derived (signed), never stored."""

    __tablename__ = "survey_links"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    alert_id: str | None = Field(default=None, max_length=36)
    task_id: str | None = Field(default=None, max_length=36)
    survey: str = Field(max_length=10)  # nps | csat
    channel: str = Field(max_length=20)
    expires_at: datetime = at_field()
    answered_at: datetime | None = at_field(nullable=True)
    score: int | None = None
    dimensions: dict[str, int] = json_field(dict)
    created_at: datetime = at_field()


class SurveyQuestion(BaseModel):
    """What a respondent sees: the question, never anything about the customer."""

    survey: str
    min: int
    max: int
    dimensions: list[str]
    expires_at: UtcDatetime


class SurveyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = PydanticField(description="nps: 0-10, csat: 1-5")
    dimensions: dict[str, int] = PydanticField(
        default_factory=dict, description="product, service_support, relationship, on the same scale"
    )


class SurveyReceipt(BaseModel):
    status: str = "recorded"
