"""The score history a batch reads, reduced to what the rules use of it.

The rules read two things from a customer's earlier scores: the lowest risk within a risk-jump rule's
window before the score (rules.core._lowest_risk_before) and the stage of the latest earlier score
(_previous_stage). For a batch whose scores needing history lie in [first, last], a stored score at r with
``last - shortest window <= r < first`` is inside every such score's window for every rule, so of those
only two matter per customer: the one of lowest risk and the latest. The read returns those two and every
other score of the window one by one; the batch's own signals (in the history only once applied) are
never folded. So one batch reads O(customers) rows instead of O(their history): with few, busy customers
(a soak's 300) the full read grew for as long as the run and raised the consumer's peak at every new
largest batch.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, String, all_, and_, bindparam, case, func, or_, select

from contracts.scoring import ScoreUpdated
from servicekit.sql import KEYS, for_each_key
from services.retention.rules.core import Rule, RuleKind
from services.retention.signals.models import Signal

# The names of the bound values: customers (keys), [since, until), and the fold's [edge, first) and own ids.
Names = tuple[str, str, str, str, str, str]
NAMES: Names = (KEYS, "since", "until", "edge", "first", "own")
COLUMNS = ("customer_id", "event_id", "at", "churn_risk", "lifecycle_stage")


def shortest_window(active: list[Rule], longest: timedelta) -> timedelta:
    """The shortest risk-jump window among the rules (longest when none has one: only the stage matters)."""
    days = [r.params.within_days for r in active if r.kind == RuleKind.risk_jump and r.params.within_days]
    return min([timedelta(days=d) for d in days] + [longest])


@cache
def reduced_statement(postgres: bool, names: Names = NAMES) -> Any:
    """The bound customers' score signals in [since, until), those in [edge, first) that are not one of
    `own` reduced to each customer's lowest-risk and latest. Columns: customer id, event id, at, churn risk,
    lifecycle stage (only the two values the rules read, kept in columns of their own: a signal's whole
    document is ten times larger and would be parsed again on every read)."""
    keys, since, until, edge, first, own = names
    at_type = Signal.__table__.c.at.type  # type: ignore[attr-defined]
    not_own = (
        Signal.event_id != all_(bindparam(own, type_=ARRAY(String)))
        if postgres
        else Signal.event_id.not_in(bindparam(own, expanding=True))
    )
    folded = and_(Signal.at >= bindparam(edge, type_=at_type), Signal.at < bindparam(first, type_=at_type), not_own)
    rows = select(
        *(Signal.__table__.c[name] for name in COLUMNS),  # type: ignore[attr-defined]
        case((folded, 1), else_=0).label("folded"),
    ).where(
        Signal.event_type == ScoreUpdated.event_type,
        Signal.at >= bindparam(since, type_=at_type),
        Signal.at < bindparam(until, type_=at_type),
    )
    each = for_each_key(rows, Signal.customer_id, postgres=postgres, param=keys).subquery("each_key")
    group = (each.c.customer_id, each.c.folded)
    ranked = select(
        *(each.c[name] for name in (*COLUMNS, "folded")),
        func.row_number().over(partition_by=group, order_by=(each.c.churn_risk, each.c.at)).label("by_risk"),
        func.row_number().over(partition_by=group, order_by=each.c.at.desc()).label("by_time"),
    ).subquery("ranked")
    return select(*(ranked.c[name] for name in COLUMNS)).where(
        or_(ranked.c.folded == 0, ranked.c.by_risk == 1, ranked.c.by_time == 1)
    )
