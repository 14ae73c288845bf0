"""Customer value report queries over scoring's own store, by SQL aggregation (the RFM quintiles: rfm.py).

Each report is one or two queries whose answer has a bounded number of rows (tiers, buckets, RFM cells,
tier pairs); lists of customers are paged. The formulas are those of services.scoring.value.measures, written
in SQL; docs/reports.md (Value) defines each measure. No I/O besides the queries; never commits.

The population of every value report: customers not erased with at least one purchase (the customers a
value can be computed for), narrowed by the filters (segment, status, value tier) on their current values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, case, cast, false, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.scoring.scores.models import CurrentScore, CustomerFeatures, TierChange
from services.scoring.value import measures
from services.scoring.value.measures import ValueCosts

F = CustomerFeatures.__table__  # type: ignore[attr-defined]
S = CurrentScore.__table__  # type: ignore[attr-defined]
T = TierChange.__table__  # type: ignore[attr-defined]
# The customer's team: the text attribute of that name, as the customer and retention reports read it.
TEAM: ColumnElement[str] = F.c.attributes["team"].as_string()
NONE_TIER = "none"  # no tier (no active value model, or no score yet)


@dataclass(frozen=True, slots=True)
class Filters:
    segments: Sequence[str] = ()
    statuses: Sequence[str] = ()
    tiers: Sequence[str] = ()  # the value tier by CLV, as scored
    owners: Sequence[str] = ()  # the account manager, from crm.customer.v1
    teams: Sequence[str] = ()  # the customer's ``team`` attribute

    def profile(self) -> list[ColumnElement[bool]]:
        """The conditions on the customer's features row (segment, status, owner, team)."""
        where: list[ColumnElement[bool]] = []
        if self.segments:
            where.append(F.c.segment.in_(list(self.segments)))
        if self.statuses:
            where.append(F.c.status.in_(list(self.statuses)))
        if self.owners:
            where.append(F.c.owner.in_(list(self.owners)))
        if self.teams:
            where.append(TEAM.in_(list(self.teams)))
        return where

    def where(self) -> list[ColumnElement[bool]]:
        where = self.profile()
        if self.tiers:
            where.append(S.c.value_tier.in_(list(self.tiers)))
        return where


# ---- expressions ---------------------------------------------------------------------------------------


def _cost(table: Any, costs: ValueCosts) -> ColumnElement[float]:
    return (
        table.c.contacts * literal(costs.per_contact, Float)
        + table.c.complaints_total * literal(costs.per_complaint, Float)
        + table.c.returns * literal(costs.per_return, Float)
    )


def cost_to_serve(costs: ValueCosts) -> ColumnElement[float]:
    return _cost(F, costs)


def contribution(costs: ValueCosts) -> ColumnElement[float]:
    return literal(costs.margin, Float) * F.c.total_spend - cost_to_serve(costs)


def referral_value(costs: ValueCosts) -> ColumnElement[float]:
    return F.c.referral_amount + (F.c.referrals - F.c.referrals_with_amount) * literal(costs.referral_value, Float)


def share_of_wallet() -> ColumnElement[float | None]:
    return case((F.c.wallet_estimate > 0, cast(F.c.total_spend, Float) / F.c.wallet_estimate), else_=None)


def potential_value() -> ColumnElement[float | None]:
    headroom = F.c.wallet_estimate - F.c.total_spend
    return case(
        (F.c.wallet_estimate > 0, case((headroom > 0, headroom), else_=literal(0.0, Float))),
        else_=None,
    )


def _joined() -> Any:
    return F.outerjoin(S, S.c.customer_id == F.c.customer_id)


def _source(filters: Filters, basis: str | None = None) -> Any:
    """The features table, joined to the current scores only when the basis or a filter needs them (an
    inner join: both need a score row)."""
    return F.join(S, S.c.customer_id == F.c.customer_id) if filters.tiers or basis == measures.CLV else F


def _scores_only(filters: Filters) -> list[ColumnElement[bool]]:
    """The population on the CLV basis read from the current scores alone, when no filter needs the
    features: a customer has a CLV once it has bought, and an erased customer has no current score."""
    where: list[ColumnElement[bool]] = [S.c.clv.is_not(None)]
    if filters.tiers:
        where.append(S.c.value_tier.in_(list(filters.tiers)))
    return where


def _needs_features(filters: Filters) -> bool:
    return bool(filters.profile())


async def _count(session: AsyncSession, source: Any, where: list[ColumnElement[bool]]) -> int:
    return int((await session.execute(select(func.count()).select_from(source).where(*where))).scalar_one())


def _population(filters: Filters) -> list[ColumnElement[bool]]:
    return [F.c.erased == false(), F.c.purchases > 0, *filters.where()]


def basis_value(basis: str, costs: ValueCosts) -> ColumnElement[Any]:
    return contribution(costs) if basis == measures.CONTRIBUTION else S.c.clv


def _nonnegative(value: ColumnElement[Any]) -> ColumnElement[float]:
    return case((value > 0, value), else_=literal(0.0, Float))


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


# ---- pyramid -------------------------------------------------------------------------------------------


async def pyramid(
    *, session: AsyncSession, basis: str, costs: ValueCosts, shares: tuple[float, float, float], filters: Filters
) -> list[dict[str, Any]]:
    """Per tier: customers and the sum of the basis value. On "clv" the tier is the one scored (by the value
    model's thresholds), on "contribution" the rank by contribution against the tier shares."""
    value = basis_value(basis, costs)
    if basis == measures.CLV:
        tier = func.coalesce(S.c.value_tier, NONE_TIER)
        query = select(tier.label("tier"), func.count().label("customers"), func.sum(value).label("value"))
        if _needs_features(filters):
            query = query.select_from(_joined()).where(*_population(filters))
        else:
            query = query.select_from(S).where(*_scores_only(filters))
        query = query.group_by(tier)
        return _rows(await session.execute(query))
    source, where = _source(filters, basis), _population(filters)
    n = await _count(session, source, where)
    ranked = (
        select(value.label("value"), func.row_number().over(order_by=(value.desc(), F.c.customer_id)).label("rn"))
        .select_from(source)
        .where(*where)
        .subquery()
    )
    platinum, gold, iron = (literal(n * cum, Float) for cum in measures.cumulative_shares(shares))
    tier = case(
        (ranked.c.rn <= platinum, measures.PLATINUM),
        (ranked.c.rn <= gold, measures.GOLD),
        (ranked.c.rn <= iron, measures.IRON),
        else_=measures.LEAD,
    )
    query = select(
        tier.label("tier"), func.count().label("customers"), func.sum(ranked.c.value).label("value")
    ).group_by(tier)
    return _rows(await session.execute(query))


# ---- concentration -------------------------------------------------------------------------------------


async def concentration(
    *, session: AsyncSession, basis: str, costs: ValueCosts, filters: Filters, points: int, top: float
) -> list[dict[str, Any]]:
    """Per Lorenz bucket k = ceil(points x i / n) of the customers in ascending order of value (values
    below zero count as zero): customers, value, sum(i x value) for the Gini, and the value of the top
    ``top`` share of customers. At most ``points`` rows."""
    raw = basis_value(basis, costs)
    value = _nonnegative(raw)
    if basis == measures.CLV and not _needs_features(filters):
        source, where = S, _scores_only(filters)
    else:
        source, where = _source(filters, basis), [*_population(filters), raw.is_not(None)]
    n = await _count(session, source, where)
    if n == 0:
        return []
    # Ties need no order among themselves: equal values add the same to every sum whichever comes first.
    ordered = (
        select(value.label("v"), func.row_number().over(order_by=value).label("i"))
        .select_from(source)
        .where(*where)
        .subquery()
    )
    k = (ordered.c.i * points + (n - 1)) // n  # integer division: ceil(points * i / n)
    in_top = (n - ordered.c.i) < literal(n * top, Float)
    query = (
        select(
            k.label("k"),
            func.count().label("customers"),
            func.sum(ordered.c.v).label("value"),
            func.sum(ordered.c.i * ordered.c.v).label("weighted"),
            func.sum(case((in_top, ordered.c.v), else_=literal(0.0, Float))).label("top_value"),
            literal(n).label("n"),
        )
        .group_by(k)
        .order_by(k)
    )
    return _rows(await session.execute(query))


# ---- tier migration ------------------------------------------------------------------------------------


# Tier codes packed into the tier history's ids: max(id x 8 + code) over a customer's rows is the code of
# its latest row (ids rise with as_of per customer), so one scan and one GROUP BY find both tiers.
TIER_CODES = {measures.PLATINUM: 1, measures.GOLD: 2, measures.IRON: 3, measures.LEAD: 4}
CODE_TIERS = {code: tier for tier, code in TIER_CODES.items()}


def tier_of_code(code: int | None) -> str:
    return NONE_TIER if code is None else CODE_TIERS.get(int(code), NONE_TIER)


async def tier_migration(
    *, session: AsyncSession, start: datetime, end: datetime, filters: Filters
) -> list[dict[str, Any]]:
    """(tier at start, tier at end, customers): a customer's tier at a moment is that of its latest tier
    change before it (the tier history, written with the scores), "none" without one. Customers first
    scored after ``start`` move from "none"."""
    code = case(TIER_CODES, value=T.c.tier, else_=0)
    packed = T.c.id * 8 + code
    per_customer = (
        select(
            T.c.customer_id.label("customer_id"),
            func.max(case((T.c.as_of < start, packed), else_=None)).label("a"),
            func.max(packed).label("b"),
        )
        .where(T.c.as_of < end)
        .group_by(T.c.customer_id)
        .subquery()
    )
    from_code, to_code = (per_customer.c.a % 8).label("from_code"), (per_customer.c.b % 8).label("to_code")
    query = select(from_code, to_code, func.count().label("customers")).group_by(from_code, to_code)
    where: list[ColumnElement[bool]] = []
    if filters.profile():
        query = query.select_from(per_customer.join(F, F.c.customer_id == per_customer.c.customer_id))
        where.extend(filters.profile())
    if filters.tiers:
        codes = [TIER_CODES[t] for t in filters.tiers if t in TIER_CODES]
        where.append(or_(from_code.in_(codes), to_code.in_(codes)))
    rows = _rows(await session.execute(query.where(*where)))
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (tier_of_code(r["from_code"]), tier_of_code(r["to_code"]))
        out[key] = out.get(key, 0) + int(r["customers"])
    return [{"from_tier": a, "to_tier": b, "customers": n} for (a, b), n in out.items()]


# The tier history derived from the score history (each customer's first score and every score whose tier
# differs from the one before): what the 2026-12-06 migration backfills, and how a bench seeds it.
TIER_HISTORY_FROM_SCORES = """
INSERT INTO tier_changes (customer_id, tier, as_of)
SELECT customer_id, value_tier, as_of FROM (
    SELECT id, customer_id, value_tier, as_of,
           lag(value_tier) OVER (PARTITION BY customer_id ORDER BY id) AS before,
           row_number() OVER (PARTITION BY customer_id ORDER BY id) AS n
    FROM scores
) s
WHERE n = 1 OR (before IS NULL) <> (value_tier IS NULL) OR before <> value_tier
ORDER BY id
"""


# ---- summary -------------------------------------------------------------------------------------------


async def summary(*, session: AsyncSession, costs: ValueCosts, filters: Filters) -> dict[str, Any]:
    sow = share_of_wallet()
    query = (
        select(
            func.count().label("customers"),
            func.coalesce(func.sum(F.c.total_spend), 0.0).label("revenue"),
            func.coalesce(func.sum(cost_to_serve(costs)), 0.0).label("cost_to_serve"),
            func.coalesce(func.sum(contribution(costs)), 0.0).label("contribution"),
            func.avg(contribution(costs)).label("avg_contribution"),
            func.count(sow).label("customers_with_wallet"),
            func.avg(sow).label("avg_share_of_wallet"),
            func.coalesce(func.sum(potential_value()), 0.0).label("potential_value"),
            func.coalesce(func.sum(F.c.referrals), 0).label("referrals"),
            func.coalesce(func.sum(referral_value(costs)), 0.0).label("referral_value"),
            func.count(S.c.clv).label("customers_with_clv"),
            func.coalesce(func.sum(S.c.clv), 0.0).label("clv"),
            func.avg(S.c.clv).label("avg_clv"),
        )
        .select_from(_joined())
        .where(*_population(filters))
    )
    return dict((await session.execute(query)).one()._mapping)


# ---- one customer --------------------------------------------------------------------------------------


async def customer_ranks(*, session: AsyncSession, row: CustomerFeatures, costs: ValueCosts) -> dict[str, int]:
    """What the customer's RFM quintiles and contribution rank need: the population size and the number of
    customers with a smaller last purchase, purchase count and spend, and with a higher contribution
    (ties: a smaller customer id ranks first, as in the reports)."""
    value = contribution(costs)
    own = F.alias("own")
    mine = (
        select(literal(costs.margin, Float) * own.c.total_spend - _cost(own, costs))
        .where(own.c.customer_id == row.customer_id)
        .scalar_subquery()
    )
    value = contribution(costs)
    ahead = or_(value > mine, and_(value == mine, F.c.customer_id < row.customer_id))
    query = select(
        func.count().label("n"),
        func.count(case((F.c.last_purchase_at < row.last_purchase_at, 1))).label("earlier"),
        func.count(case((F.c.purchases < row.purchases, 1))).label("fewer"),
        func.count(case((F.c.total_spend < row.total_spend, 1))).label("less"),
        func.count(case((ahead, 1))).label("ahead"),
    ).where(F.c.erased == false(), F.c.purchases > 0)
    return {k: int(v) for k, v in (await session.execute(query)).one()._mapping.items()}
