"""What the scoring service's value, report and segment routes share: query parameters and filters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request
from pydantic import StringConstraints

from contracts.common import CustomerStatus
from contracts.customer import VALUE_TIERS
from servicekit.problems import Problem, field_error
from services.scoring.reports.service import Filters
from services.scoring.settings import ScoringSettings

Tier = Literal[VALUE_TIERS]  # type: ignore[valid-type]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Segments = Annotated[list[Label] | None, Query(alias="segment", description="customer segment; repeatable")]
Statuses = Annotated[list[CustomerStatus] | None, Query(alias="status", description="customer status; repeatable")]
Tiers = Annotated[list[Tier] | None, Query(alias="tier", description="value tier by CLV as scored; repeatable")]
Owners = Annotated[list[Label] | None, Query(alias="owner", description="account manager; repeatable")]
Teams = Annotated[list[Label] | None, Query(alias="team", description="the customer's team attribute; repeatable")]
Basis = Annotated[
    Literal["clv", "contribution"] | None, Query(description="the pyramid's basis; default SCORING_VALUE_BASIS")
]


def settings_of(request: Request) -> ScoringSettings:
    settings: ScoringSettings = request.app.state.settings
    return settings


def filters_of(
    segment: list[str] | None,
    status: list[CustomerStatus] | None,
    tier: list[str] | None = None,
    owner: list[str] | None = None,
    team: list[str] | None = None,
) -> Filters:
    for name, values in (("segment", segment), ("owner", owner), ("team", team)):
        for index, value in enumerate(values or ()):
            if not 0 < len(value) <= 100:
                raise Problem(
                    422,
                    "Invalid request",
                    code="validation",
                    errors=[field_error(f"query.{name}[{index}]", "1 to 100 characters")],
                )
    statuses = [s.value for s in status or ()]
    return Filters(segments=segment or (), statuses=statuses, tiers=tier or (), owners=owner or (), teams=team or ())
