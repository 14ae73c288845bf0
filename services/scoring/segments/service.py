"""The segment builder's queries: a saved filter's customers, one page or counted, by SQL over scoring's store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, false, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from contracts.common import ContactChannel
from services.scoring.reports.rfm import RfmCuts, rfm_columns, rfm_cuts
from services.scoring.reports.service import (
    TEAM,
    F,
    Filters,
    S,
    _joined,
    _rows,
    contribution,
    share_of_wallet,
)
from services.scoring.segments.segment_filter import Condition, needs_rfm
from services.scoring.value import measures
from services.scoring.value.measures import ValueCosts


def segment_columns(costs: ValueCosts) -> dict[str, ColumnElement[Any]]:
    return {
        "churn_risk": S.c.churn_risk,
        "health": S.c.health,
        "clv": S.c.clv,
        "p_alive": S.c.p_alive,
        "value_at_risk": S.c.value_at_risk,
        "value_tier": S.c.value_tier,
        "lifecycle_stage": S.c.lifecycle_stage,
        "revenue": F.c.total_spend,
        "contribution": contribution(costs),
        "purchases": F.c.purchases,
        "complaints": F.c.complaints_total,
        "returns": F.c.returns,
        "referrals": F.c.referrals,
        "share_of_wallet": share_of_wallet(),
        "last_nps": F.c.last_nps,
        "last_csat": F.c.last_csat,
        "segment": F.c.segment,
        "status": F.c.status,
        "owner": F.c.owner,
        "team": TEAM,
        **{f"consent_{channel.value}": F.c.consent[channel.value].as_string() for channel in ContactChannel},
    }


LISTED = ("customer_id", "segment", "status", "value_tier", "lifecycle_stage", "churn_risk", "clv", "contribution")


def _cells_of(segments: Sequence[str]) -> list[int]:
    cells = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    return [r * 100 + f * 10 + m for r, f, m in cells if measures.rfm_segment(r, f, m) in segments]


def _segment_condition(columns: dict[str, ColumnElement[Any]], c: Condition) -> ColumnElement[bool]:
    if c.field != "rfm_segment":
        return _condition(columns[c.field], c)
    if "rfm_cell" not in columns:  # nobody has bought: no one has an RFM segment
        return false()
    cell = columns["rfm_cell"]
    named = list(c.value) if c.op == "in" else [c.value]
    if c.op == "ne":
        return and_(cell.is_not(None), cell.not_in(_cells_of(named)))
    return cell.in_(_cells_of(named))


def _condition(column: ColumnElement[Any], c: Condition) -> ColumnElement[bool]:
    match c.op:
        case "eq":
            return column == c.value
        case "ne":
            return column != c.value
        case "lt":
            return column < c.value
        case "lte":
            return column <= c.value
        case "gt":
            return column > c.value
        case "gte":
            return column >= c.value
        case "in":
            return column.in_(list(c.value))
    raise ValueError(c.op)


def segment_query(conditions: tuple[Condition, ...], costs: ValueCosts, cuts: RfmCuts | None) -> Select[Any]:
    """customer_id and the listed fields of the customers (not erased) every condition holds for.
    RFM conditions need ``cuts`` (rfm_cuts over every customer who bought)."""
    columns = segment_columns(costs)
    source = _joined()
    if cuts is not None and cuts.n:
        rfm = rfm_columns(cuts)
        columns |= rfm
        # The segment as the cell code r x 100 + f x 10 + m: a condition on segments becomes one on the
        # codes of the cells they hold, so each quintile is evaluated once per row.
        columns["rfm_cell"] = rfm["r"] * 100 + rfm["f"] * 10 + rfm["m"]
    elif needs_rfm(conditions):  # nobody has bought: no one has RFM scores
        columns |= {name: literal(None) for name in ("r", "f", "m")}
    where = [F.c.erased == false(), *(_segment_condition(columns, c) for c in conditions)]
    listed = [F.c.customer_id.label("customer_id"), *(columns[name].label(name) for name in LISTED[1:])]
    return select(*listed).select_from(source).where(*where)


async def segment_cuts(session: AsyncSession, conditions: tuple[Condition, ...]) -> RfmCuts | None:
    return await rfm_cuts(session, Filters()) if needs_rfm(conditions) else None


async def segment_page(
    *,
    session: AsyncSession,
    conditions: tuple[Condition, ...],
    costs: ValueCosts,
    limit: int,
    offset: int = 0,
    after: str | None = None,
    cuts: RfmCuts | None = None,
) -> list[dict[str, Any]]:
    query = segment_query(conditions, costs, cuts)
    if after is not None:
        query = query.where(F.c.customer_id > after)
    query = query.order_by(F.c.customer_id).limit(limit).offset(offset)
    return _rows(await session.execute(query))


async def segment_count(
    *, session: AsyncSession, conditions: tuple[Condition, ...], costs: ValueCosts, cuts: RfmCuts | None = None
) -> int:
    inner = segment_query(conditions, costs, cuts).subquery()
    return int((await session.execute(select(func.count()).select_from(inner))).scalar_one())
