"""A batch's score history read with the scores inside every window folded to the lowest-risk and latest
ones (signals.window) gives the rules what the full read gave: each needing score's lowest risk within
each rule's window and its previous stage, whichever of the batch's own signals are applied yet."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from contracts.common import Severity
from contracts.scoring import ScoreUpdated
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.rules.core import Rule, RuleKind, RuleParams
from services.retention.signals import service
from services.retention.signals.models import Signal
from tests.unit.retention.events import T0, score

T = T0
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
    rules = [
        Rule(kind=RuleKind.risk_jump, severity=Severity.high, params=RuleParams(delta=0.2, within_days=w.days))
        for w in WINDOWS
    ]
    # The batch's new scores that need history (risk 0.9 >= delta), each customer's at random in [first, last]
    start = rng.randint(0, 30)
    minutes = [start, start + rng.randint(0, 30)] + [start + rng.randint(0, 30) for _ in CUSTOMERS[2:]]
    needing = [score(c, 0.9, minutes=m) for c, m in zip(CUSTOMERS, minutes, strict=True)]
    request = service.history_request(needing, {e.id for e in needing}, rules, pending=own)
    assert request is not None and request.customers == CUSTOMERS
    first, last, edge = request.first, request.until, request.edge
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        nothing_folded = service.HistoryRequest(request.since, last, CUSTOMERS, request.since, request.since, ())
        full = await service._read_score_signals(uow, nothing_folded)
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


def test_the_batch_s_folded_read_answers_only_scores_from_its_first_to_its_last() -> None:
    """A score before `first` could see a folded score that came after it: it reads for itself."""
    minute = timedelta(minutes=1)
    request = service.HistoryRequest(T - timedelta(days=5), T + 10 * minute, ("a",), T - minute, T, ())
    history = service._BatchHistory(request, {"a": []})
    assert history.covers("a", T - timedelta(days=5), T)
    assert history.covers("a", T - timedelta(days=2), T + 10 * minute)
    assert not history.covers("a", T - timedelta(days=5), T - minute)  # before first
    assert not history.covers("a", T - timedelta(days=5), T + 11 * minute)  # after the last
    assert not history.covers("a", T, T + minute)  # a window that starts inside the folded span
    assert not history.covers("b", T - timedelta(days=5), T)  # not read for this customer
