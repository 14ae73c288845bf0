"""/retention/metrics from its read model (monthly totals kept at each event's commit) equals the exact
computation from the facts, for every grouping and period; redelivered events count once; erasure leaves
no tier of the customer behind."""

import asyncio
import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from contracts.customer import CustomerUpdated
from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.inbox import EventConsumer
from servicekit.migrations import upgrade
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import resolve_alert
from services.retention.alerts.models import Alert, AlertStatus, Outcome
from services.retention.background import rebuild_metric_totals
from services.retention.db import metadata
from services.retention.handlers import HANDLERS
from services.retention.main import SPEC
from services.retention.outcomes import read_model, service
from services.retention.outcomes.models import MetricFact, MetricTotal
from services.retention.settings import RetentionSettings
from tests.unit.retention.events import T0, complaint, created, erased, received, score, status_changed
from tests.unit.retention.older_schema import seed_with_todays_models
from tests.unit.retention.test_metrics_paging import START, _seed_random

LOOKBACK = timedelta(days=180)
GROUPINGS = [None, "tier", "segment", "rule"]
BEFORE_TOTALS = "2f6d8a1c4e97"  # the retention head before the metrics' read model
TOTALS = "3b8e5d1f7a29"  # the migration that creates and backfills it


def periods(origin: datetime) -> list[tuple[datetime, datetime]]:
    month = datetime(origin.year, origin.month, 1, tzinfo=UTC)
    return [
        (month, datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)),  # one month
        (origin - timedelta(days=1), origin + timedelta(days=30)),  # partial months
        (origin + timedelta(days=3, hours=7), origin + timedelta(days=3, hours=19)),  # within a day
        (origin - timedelta(days=400), origin + timedelta(days=120)),  # longer than the data
        (origin + timedelta(days=800), origin + timedelta(days=900)),  # after the data
        (origin - timedelta(days=3000), origin - timedelta(days=2900)),  # before it
    ]


async def assert_same_as_exact(database: Database, periods: list[tuple[datetime, datetime]]) -> None:
    for start, end in periods:
        for group_by in GROUPINGS:
            async with database.sessions() as session:
                fast = await service.metrics(
                    session=session, start=start, end=end, group_by=group_by, lookback=LOOKBACK
                )
                exact = await service.exact_metrics(
                    session=session, start=start, end=end, group_by=group_by, lookback=LOOKBACK
                )
            assert (asdict(fast[0]), [asdict(g) for g in fast[1]]) == (
                asdict(exact[0]),
                [asdict(g) for g in exact[1]],
            ), (start, end, group_by)


async def _read_model(database: Database) -> tuple[list[Any], list[Any]]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(
                MetricFact.customer_id, MetricFact.measure, MetricFact.rule, MetricFact.tier, MetricFact.segment
            ).add_columns(MetricFact.lo, MetricFact.t, MetricFact.u, MetricFact.value)
        )
        totals = await session.execute(select(MetricTotal).where(MetricTotal.n != 0))
        return sorted(map(tuple, rows.all()), key=repr), sorted(
            (t.kind, t.key, t.measure, t.lo_month, t.t_month, t.u_month, t.n) for t in totals.scalars()
        )


async def rebuild(database: Database) -> None:
    async with database.transaction() as session:
        await session.run_sync(lambda s: read_model.rebuild(s.connection(), LOOKBACK, page=29))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_backfilled_totals_give_the_exact_metrics_on_a_random_store(database: Database, seed: int) -> None:
    await _seed_random(database, seed, customers=300)
    await rebuild(database)  # as the migration backfills them from the rows already stored

    await assert_same_as_exact(database, periods(START))
    async with database.sessions() as session:
        overall, _ = await service.metrics(
            session=session, start=START - timedelta(days=400), end=START + timedelta(days=60), group_by=None,
            lookback=LOOKBACK,
        )  # fmt: skip
    assert overall.customers > 100 and overall.churned > 5 and overall.saved_customers > 0
    assert overall.churned_with_warning > 0 and overall.control.alerts > 0 and overall.treated.churned > 0


def _segment_and_tier(customer_id: str, version: int, segment: str, tier: str | None) -> Received[CustomerUpdated]:
    data = CustomerUpdated(
        customer_id=customer_id,
        version=version,
        changed=["segment", "attributes"],
        segment=segment,
        attributes={"tier": tier} if tier else {},
    )
    return received(data, "/crm/customer")


def _history(rng: random.Random, customers: int) -> list[Received[Any]]:
    """Creations, updates, scores, complaints and status changes over five months, in a shuffled order."""
    events: list[Received[Any]] = []
    for n in range(customers):
        i = f"h-{n:02d}"
        if rng.random() < 0.9:
            events.append(created(i, segment=rng.choice(("smb", "enterprise")), tier=rng.choice(("gold", None))))
        if rng.random() < 0.3:
            events.append(_segment_and_tier(i, 2, rng.choice(("smb", "retail")), rng.choice(("silver", None))))
        for _ in range(rng.choice((0, 1, 2))):
            tier = rng.choice(("platinum", "lead", None))
            events.append(score(i, rng.random(), minutes=rng.randint(-40, 100) * 1440, tier=tier))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            events.append(complaint(i, rng.choice(("critical", "high")), minutes=rng.randint(-60, 100) * 1440))
        for k in range(rng.choice((0, 0, 1, 2))):
            status = rng.choice(("churned", "churned", "active", "won_back"))
            events.append(status_changed(i, status, days=rng.randint(-50, 110) + k / 10))
    rng.shuffle(events)
    return events


def _record(event: Received[Any], offset: int) -> ConsumerRecord:
    value = event.envelope.to_json()
    return ConsumerRecord(
        topic="crm.test.v1", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=None, value=value,
        checksum=None, serialized_key_size=0, serialized_value_size=len(value), headers=[],
    )  # fmt: skip


async def _resolve_some(database: Database, rng: random.Random) -> None:
    async with database.transaction() as session:
        unresolved = (await session.execute(select(Alert).where(Alert.status != AlertStatus.resolved))).scalars().all()
        for alert in rng.sample(list(unresolved), k=len(unresolved) // 3):
            outcome = rng.choice((Outcome.saved, Outcome.saved, Outcome.false_alarm))
            await resolve_alert(uow=UnitOfWork(session), alert_id=alert.id, outcome=outcome, alert=alert)


async def apply_history(database: Database, seed: int, customers: int = 40) -> None:
    """A random history through the real consumer, in batches that also redeliver earlier events (the inbox
    drops them), with some alerts resolved by hand between batches."""
    rng = random.Random(seed)
    events = _history(rng, customers)
    consumer = EventConsumer(database, RetentionSettings(database_url=database.url), HANDLERS, ["crm.test.v1"])
    offset = 0
    for start in range(0, len(events), 17):
        batch = events[start : start + 17] + rng.sample(events[: start + 1], k=min(3, start + 1))
        records = [_record(e, offset + k) for k, e in enumerate(batch)]
        offset += len(batch)
        await consumer.apply_batch([consumer.decode(r) for r in records])
        if rng.random() < 0.4:
            await _resolve_some(database, rng)
    await _resolve_some(database, rng)


async def assert_kept_totals_are_exact(database: Database) -> None:
    """The metrics equal the exact ones for every period and grouping; a rebuild changes no row or total."""
    await assert_same_as_exact(database, periods(T0))
    kept = await _read_model(database)
    assert kept[0] and kept[1]
    await rebuild(database)
    assert await _read_model(database) == kept


@pytest.mark.parametrize("seed", [4, 5])
async def test_totals_kept_event_by_event_equal_the_exact_metrics_and_a_rebuild(database: Database, seed: int) -> None:
    await apply_history(database, seed)

    await assert_kept_totals_are_exact(database)


@pytest.mark.parametrize("seed", [7, 8])
async def test_the_migration_backfills_the_totals_from_the_rows_already_stored(tmp_path: Path, seed: int) -> None:
    """Its own frozen copy of the computation builds exactly the rows and totals the application's rebuild does."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name, BEFORE_TOTALS)
    database = Database(url)
    try:
        await seed_with_todays_models(database, metadata, lambda: _seed_random(database, seed, customers=200))
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name, TOTALS)
        backfilled = await _read_model(database)
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)

        await assert_same_as_exact(database, periods(START))
        async with database.sessions() as session:
            assert await session.run_sync(lambda s: read_model.lookback_of(s.connection())) == LOOKBACK
        await rebuild(database)
        assert backfilled[0] and backfilled[1]
        assert await _read_model(database) == backfilled
    finally:
        await database.dispose()


def test_the_migration_s_backfill_reads_no_application_code() -> None:
    """A migration runs as written forever: it may not import the application, whose code changes."""
    source = (SPEC.migrations_dir / "versions" / "2026-12-07_metric_totals.py").read_text()
    assert f'revision: str = "{TOTALS}"' in source
    imported = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imported and not [line for line in imported if "services" in line or "contracts" in line]


async def test_a_redelivered_event_counts_once(database: Database) -> None:
    consumer = EventConsumer(database, RetentionSettings(database_url=database.url), HANDLERS, ["crm.test.v1"])
    events = [created("c-1"), complaint("c-1"), status_changed("c-1", days=3)]
    await consumer.apply_batch([consumer.decode(_record(e, k)) for k, e in enumerate(events)])
    once = await _read_model(database)

    again = [_record(e, 10 + k) for k, e in enumerate(events + events)]  # in a later batch, twice over
    await consumer.apply_batch([consumer.decode(r) for r in again])

    assert await _read_model(database) == once
    async with database.sessions() as session:
        overall, _ = await service.metrics(
            session=session, start=T0 - timedelta(days=1), end=T0 + timedelta(days=30), group_by=None, lookback=LOOKBACK
        )
    assert (overall.alerted_customers, overall.churned, overall.churned_with_warning) == (1, 1, 1)
    assert (overall.treated.alerts + overall.control.alerts, overall.customers) == (1, 1)


async def test_erasure_leaves_no_tier_of_the_customer_in_the_totals(database: Database) -> None:
    consumer = EventConsumer(database, RetentionSettings(database_url=database.url), HANDLERS, ["crm.test.v1"])
    events = [created("c-1", tier="gold", segment="smb"), complaint("c-1"), status_changed("c-1", days=3)]
    await consumer.apply_batch([consumer.decode(_record(e, k)) for k, e in enumerate(events)])
    rows, totals = await _read_model(database)
    assert {r[3] for r in rows} == {"gold"} and any(t[:2] == ("tier", "gold") for t in totals)

    await consumer.apply_batch([consumer.decode(_record(erased("c-1"), 5))])

    rows, totals = await _read_model(database)
    assert {r[3] for r in rows} == {"unknown"}  # the erased tier attribute is gone from the rows
    assert not any(t[:2] == ("tier", "gold") for t in totals)  # and from the counts (which hold no ids)
    assert all(isinstance(t[-1], int) for t in totals)


async def test_another_look_back_answers_exactly_until_the_totals_are_rebuilt_with_it(database: Database) -> None:
    await apply_history(database, 6, customers=20)
    shorter = timedelta(days=20)
    start, end = T0 - timedelta(days=60), T0 + timedelta(days=100)
    async with database.sessions() as session:
        exact = await service.exact_metrics(session=session, start=start, end=end, group_by="rule", lookback=shorter)
        before = await service.metrics(session=session, start=start, end=end, group_by="rule", lookback=shorter)
        default = await service.metrics(session=session, start=start, end=end, group_by="rule", lookback=LOOKBACK)
    assert before == exact and default[0].churned_with_warning > exact[0].churned_with_warning

    async with database.transaction() as session:  # as the housekeeping round does when the setting changed
        assert await session.run_sync(lambda s: read_model.start_rebuild(s.connection(), shorter))
        assert not await session.run_sync(lambda s: read_model.start_rebuild(s.connection(), shorter))
    async with database.sessions() as session:  # under way: the facts answer
        assert await session.run_sync(lambda s: read_model.lookback_of(s.connection())) is None
        assert await service.metrics(session=session, start=start, end=end, group_by="rule", lookback=shorter) == exact
    await rebuild_metric_totals(database, shorter)

    async with database.sessions() as session:
        assert await session.run_sync(lambda s: read_model.lookback_of(s.connection())) == shorter
        after = await service.metrics(session=session, start=start, end=end, group_by="rule", lookback=shorter)
    assert after == exact
