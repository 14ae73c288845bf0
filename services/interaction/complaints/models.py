"""Complaints: the workflow steps' table and the complaint API shapes (a complaint is an interaction)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField
from sqlalchemy import String, Text
from sqlmodel import Field

from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.complaints.workflow import RESOLUTION_MAX
from services.interaction.db import InteractionTable, UtcDatetime
from services.interaction.interactions.models import InteractionPublic


class ComplaintStep(InteractionTable, table=True):
    """One step of a complaint's workflow, for the record of who did what when."""

    __tablename__ = "complaint_steps"

    id: int | None = Field(default=None, primary_key=True)
    complaint_id: str = Field(max_length=36, index=True)
    previous_status: str = Field(sa_type=String(20))
    status: str = Field(sa_type=String(20))
    note: str | None = Field(default=None, sa_type=Text)  # free text: blanked on erasure
    at: datetime = Field(sa_type=UtcDateTime)


class ComplaintTransition(BaseModel):
    """POST /complaints/{id}/transitions: the next step of the workflow."""

    model_config = ConfigDict(extra="forbid")

    to: ComplaintStatus
    note: str | None = PydanticField(default=None, max_length=2000, description="what was done or agreed")
    resolution: str | None = PydanticField(
        default=None, max_length=RESOLUTION_MAX, description="required to move to resolved: the solution"
    )


class ComplaintStepPublic(BaseModel):
    previous_status: ComplaintStatus
    status: ComplaintStatus
    note: str | None
    at: UtcDatetime


class ComplaintPublic(InteractionPublic):
    """A complaint with the steps of its workflow, oldest first."""

    steps: list[ComplaintStepPublic] = []


class ComplaintListItem(InteractionPublic):
    owner: str | None = PydanticField(
        default=None, description="the customer's account manager, as this service knows it"
    )


class ComplaintsPublic(Page[ComplaintListItem]):
    pass
