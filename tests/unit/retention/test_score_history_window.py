"""A batch's score history read with the scores inside every window folded to the lowest-risk and latest
ones (signals.window) gives the rules what the full read gave: each needing score's lowest risk within
each rule's window and its previous stage, whichever of the batch's own signals are applied yet."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.common import Severity
from contracts.scoring import ScoreUpdated
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.rules.core import Rule, RuleKind, RuleParams
from services.retention.signals import service, window
from services.retention.signals.models import Signal

T = datetime(2026, 5, 1, tzinfo=UTC)
WINDOWS = (timedelta(days=2), timedelta(days=5))
CUSTOMERS = ("a", "b", "c", "d")


def _signals(rng: random.Random) -> list[Signal]:
    rows = []
    seconds = rng.sample(range(-6 * 86400, 3600), 4 * 90)  # distinct times: "latest" has one answer
    for n, second in enumerate(seconds):
        customer = CUSTOMERS[n % 4]
        scored = rng.random() < 0.85
        rows.append(
            Signal(
                event_id=f"e{n}",
                event_type=ScoreUpdated.event_type if scored else "complaint.opened",
                customer_id=customer,
                at=T + timedelta(seconds=second),
                data={},
                churn_risk=round(rng.random(), 1) if scored else None,  # ties in risk
                lifecycle_stage=rng.choice(("active", "at_risk", "decline")) if scored else None,
            )
        )
    return rows


def what_the_rules_see(signals: list[Any], at: datetime, unapplied: set[str]) -> tuple[Any, ...]:
    """score_history's filter, then the lowest risk within each window and the latest stage before `at`."""
    history = [s for s in signals if at - max(WINDOWS) <= s.at < at and s.event_id not in unapplied]
    lowest = tuple(min((s.churn_risk for s in history if at - w <= s.at), default=None) for w in WINDOWS)
    latest = max(history, key=lambda s: s.at).lifecycle_stage if history else None
    return (*lowest, latest)


async def assert_folded_history_gives_the_rules_the_same(database: Database, seed: int) -> None:
    rng = random.Random(seed)
    rows = _signals(rng)
    async with database.transaction() as session:
        session.add_all(rows)
    own = sorted(r.event_id for r in rng.sample(rows, 40))  # the batch's: stored by its preload
    first = T + timedelta(seconds=rng.randint(0, 1800))
    last = first + timedelta(seconds=rng.randint(0, 1800))
    rules = [
        Rule(kind=RuleKind.risk_jump, severity=Severity.high, params=RuleParams(delta=0.2, within_days=w.days))
        for w in WINDOWS
    ]
    longest = service.history_window(rules)
    since = first - longest
    edge = last - window.shortest_window(rules, longest)
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        nothing_folded = service.HistoryRequest(since, last, CUSTOMERS, since, since, ())
        full = await service._read_score_signals(uow, nothing_folded)
        request = service.HistoryRequest(since, last, CUSTOMERS, edge, first, tuple(own))
        folded = await service._read_score_signals(uow, request)
    for customer in CUSTOMERS:  # it does fold: of the signals inside every window, two per customer are left
        inside = [s for s in full[customer] if edge <= s.at < first and s.event_id not in own]
        assert len(inside) > 10
        assert len([s for s in folded[customer] if edge <= s.at < first and s.event_id not in own]) <= 2
    for customer in CUSTOMERS:
        for _ in range(20):
            at = first + (last - first) * rng.random()
            unapplied = set(rng.sample(own, rng.randint(0, len(own))))
            expected = what_the_rules_see(full[customer], at, unapplied)
            assert what_the_rules_see(folded[customer], at, unapplied) == expected, (customer, at)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_the_folded_history_gives_each_score_the_lowest_risk_and_previous_stage_of_the_full_read(
    database: Database, seed: int
) -> None:
    await assert_folded_history_gives_the_rules_the_same(database, seed)
