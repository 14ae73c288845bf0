"""The retention batch preload (services/retention/batch_rows.py) stores the batch's signals and reads every
row its events need in the statements of the fold: the same rows, in the same per-transaction states, and the
same signals stored, as the separate statements it replaced (tests/unit/retention/batch_reference.py), for
random stores and random batches."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from contracts.interaction import InteractionRecorded
from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.unit_of_work import UnitOfWork
from services.retention import batch_rows
from services.retention.catalog.models import CatalogVersion
from services.retention.reports.batch import ReadModelBatch
from services.retention.reports.models import ChurnFact, CustomerFact, FactEvent
from services.retention.rules.models import AlertRule
from services.retention.signals import service as signals
from services.retention.signals.models import Signal
from services.retention.waits.handlers import WaitingCustomers
from services.retention.waits.models import EnrolmentWake
from tests.unit.retention.batch_reference import preload_separately
from tests.unit.retention.events import T0, complaint, created, overdue, received, score, survey, updated
from tests.unit.retention.test_batch_rows import _values, seed_random, snapshot

CUSTOMERS = 120
Preload = Callable[[UnitOfWork, list[Received[Any]]], Awaitable[None]]


def _interaction(customer_id: str, kind: str, minutes: int, **extra: Any) -> Received[Any]:
    data = InteractionRecorded(
        customer_id=customer_id,
        interaction_id=f"i-{customer_id}-{kind}-{minutes}",
        type=kind,
        occurred_at=T0 + timedelta(minutes=minutes),
        **extra,
    )
    return received(data, "/crm/interaction")


def random_batch(rng: random.Random, size: int) -> list[Received[Any]]:
    """Events of every kind the preload looks at, for known and unknown customers, several per customer."""
    ids = [f"b-{n:04d}" for n in rng.sample(range(CUSTOMERS + 5), min(size, 8))]
    makers: list[Callable[[str, int], Received[Any]]] = [
        lambda c, m: _interaction(c, "purchase", m, amount=Decimal(20), currency="EUR"),
        lambda c, m: _interaction(c, "return", m, amount=Decimal(5), currency="EUR"),
        lambda c, m: _interaction(c, "call", m, category="price"),
        lambda c, m: _interaction(c, "ticket", m),
        lambda c, m: complaint(c, minutes=m),
        lambda c, m: overdue(c, minutes=m),
        lambda c, m: survey(c, "nps", rng.randint(0, 10), minutes=m),
        lambda c, m: survey(c, "ces", 3, minutes=m),
        lambda c, m: score(c, rng.random(), minutes=m, stage=rng.choice(("active", "at_risk", None))),
        lambda c, m: created(c),
        lambda c, m: updated(c),
    ]
    return [rng.choice(makers)(rng.choice(ids), minutes) for minutes in range(size)]


async def seed_batch_rows(database: Database, rng: random.Random, batches: list[list[Received[Any]]]) -> None:
    """Read-model facts, churns and registered waits for some customers, and for some of the batches' event
    ids a fact_events row or a stored signal already (a redelivered event)."""
    rows: list[object] = []
    for n in range(CUSTOMERS):
        i = f"b-{n:04d}"
        if rng.random() < 0.5:
            rows.append(CustomerFact(customer_id=i, orders=rng.randint(0, 9), revenue=float(rng.randint(0, 999))))
        for k in range(rng.choice((0, 0, 1, 2))):
            at = T0 - timedelta(days=rng.randint(1, 400))
            rows.append(ChurnFact(event_id=f"churn-{i}-{k}", customer_id=i, churned_at=at, reason="price"))
        for k in range(rng.choice((0, 0, 0, 1, 2))):
            rows.append(EnrolmentWake(enrolment_id=f"w-{i}-{k}", customer_id=i, events=",purchased,"))
    for event in (e for batch in batches for e in batch):
        if rng.random() < 0.2:
            at = T0 - timedelta(days=1)
            rows.append(FactEvent(event_id=event.id, customer_id=event.data.customer_id, kind="order", at=at))
        if rng.random() < 0.2 and isinstance(event.data, signals.WATCHED):
            rows.append(Signal(**signals.signal_row(event)))
    async with database.transaction() as session:
        session.add_all(rows)


def batch_snapshot(uow: UnitOfWork) -> dict[str, Any]:
    """What the batch's handlers find in the transaction's states, as plain values."""
    model = uow.state(ReadModelBatch)
    batch = uow.state(signals.BatchSignals)
    history = batch.history
    return {
        **snapshot(uow),
        "stored": sorted(model.stored),
        "checked": sorted(model.checked),
        "facts": {i: _values(r) for i, r in model.facts.items()},
        "churns": {i: [_values(r) for r in rows] for i, rows in model.churns.items()},
        "waiting": sorted(uow.state(WaitingCustomers).ids or ()),
        "unapplied": batch.unapplied,
        "history": None if history is None else (history.request, history.signals),
    }


async def preloaded(database: Database, preload: Preload, events: list[Received[Any]]) -> dict[str, Any]:
    """The states after the preload, and the signals stored, in a transaction then rolled back."""
    async with database.sessions() as session:
        uow = UnitOfWork(session)
        await preload(uow, events)
        got = batch_snapshot(uow)
        got["signals"] = sorted((await session.execute(select(Signal.event_id))).scalars())
        await session.rollback()
    return got


async def assert_the_fold_equals_the_separate_statements(database: Database, seed: int) -> None:
    rng = random.Random(seed)
    await seed_random(database, seed, customers=CUSTOMERS)
    batches = [random_batch(rng, size) for size in (1, 2, 2, 5, 20, 20, 60)]
    await seed_batch_rows(database, rng, batches)
    kinds: set[str] = set()
    for events in batches:
        got = await preloaded(database, batch_rows.preload, events)
        assert got == await preloaded(database, preload_separately, events)
        kinds |= {k for k in ("stored", "facts", "churns", "waiting", "unapplied") if got[k]}
        kinds |= {"a stored fact" for v in got["facts"].values() if v is not None}
        kinds |= {"a redelivered signal" for new in got["unapplied"].values() if not new}
        kinds |= {"history"} if got["history"] else set()
    # every kind of row was there to be read in some batch
    assert kinds == {
        "stored",
        "facts",
        "churns",
        "waiting",
        "unapplied",
        "a stored fact",
        "a redelivered signal",
        "history",
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_folded_preload_gives_the_states_and_signals_of_the_separate_statements(
    database: Database, seed: int
) -> None:
    await assert_the_fold_equals_the_separate_statements(database, seed)


async def test_a_batch_without_customers_reads_nothing_and_nobody_waits(database: Database) -> None:
    async with database.sessions() as session:
        uow = UnitOfWork(session)
        await batch_rows.preload(uow, [])
        assert uow.state(WaitingCustomers).ids == set()
        assert uow.state(signals.BatchSignals).unapplied == {}


async def test_new_scores_get_their_history_from_the_preload_statement_when_the_catalog_has_not_changed(
    database: Database,
) -> None:
    old = [score("h-1", 0.2, minutes=m) for m in range(3)]
    async with database.transaction() as session:
        await batch_rows.preload(UnitOfWork(session), old)  # stored, and the catalog read by this process
    statements: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    try:
        async with database.transaction() as session:
            uow = UnitOfWork(session)
            await batch_rows.preload(uow, [score("h-1", 0.9, minutes=10)])
            history = uow.state(signals.BatchSignals).history
    finally:
        sa_event.remove(database.engine.sync_engine, "before_cursor_execute", remember)
    # all three inside the new score's every window: folded to the lowest-risk (the first of equal risks) and latest
    assert history is not None and {s.event_id for s in history.signals["h-1"]} == {old[0].id, old[-1].id}
    reads = [s for s in statements if "FROM signals" in s and "INSERT" not in s]
    assert len(reads) == 1 and "batch_rows" in reads[0]  # no read of its own


async def test_after_the_rules_change_new_scores_get_the_history_the_new_rules_need(database: Database) -> None:
    rng = random.Random(11)
    await seed_random(database, 11, customers=CUSTOMERS)
    batches = [random_batch(rng, 20) for _ in range(3)]
    await seed_batch_rows(database, rng, batches)
    async with database.transaction() as session:
        # the process reads the catalog; a score 100 days back: history under the new rules only
        await batch_rows.preload(UnitOfWork(session), [*batches[0], score("b-0001", 0.3, days=-100)])
        for rule in (await session.execute(select(AlertRule).where(AlertRule.kind == "risk_jump"))).scalars():
            rule.params = {**rule.params, "within_days": 300}
        (await session.execute(select(CatalogVersion))).scalar_one().token = "rules-changed"
    later = [*batches[1], score("b-0001", 0.9, minutes=100)]
    got = await preloaded(database, batch_rows.preload, later)
    assert got == await preloaded(database, preload_separately, later)
    assert got["history"][0].until - got["history"][0].since > timedelta(days=299)  # the new window
    assert got["history"][1]["b-0001"]  # the score 100 days back
