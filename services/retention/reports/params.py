"""What the retention report routes share: the path prefix, the filter parameters and the report bases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from pydantic import BaseModel, Field

from services.retention.db import Tier
from services.retention.reports.sql import Filters
from services.retention.settings import RetentionSettings

PREFIX = "/reports/retention"

Tiers = Annotated[list[Tier] | None, Query(alias="tier", description="value tier; repeatable")]
Segments = Annotated[list[str] | None, Query(alias="segment", description="repeat to match any of several")]
Owners = Annotated[list[str] | None, Query(alias="owner", description="account manager; repeatable")]
Teams = Annotated[list[str] | None, Query(alias="team", description="the customer's team attribute; repeatable")]


def filters_of(
    tier: list[str] | None, segment: list[str] | None, owner: list[str] | None, team: list[str] | None
) -> Filters:
    return Filters(tiers=tier or (), segments=segment or (), owners=owner or (), teams=team or ())


def settings_of(request: Request) -> RetentionSettings:
    settings: RetentionSettings = request.app.state.settings
    return settings


class Report(BaseModel):
    from_: str = Field(alias="from")
    to: str


class Paged(Report):
    total: int
    limit: int
    offset: int
