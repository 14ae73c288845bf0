"""A changed look-back rebuilds the metrics' read model a chunk of customers per transaction: the finished rows
and totals are the one-shot rebuild's, the metrics answer from the facts until the last chunk, and an event
committed between chunks (for a customer already rebuilt or not yet) is counted with the new look-back."""

from datetime import timedelta
from typing import Any

from servicekit.db import Database
from servicekit.inbox import EventConsumer
from services.retention.handlers import HANDLERS
from services.retention.outcomes import read_model, service
from services.retention.settings import RetentionSettings
from tests.unit.retention.events import T0, complaint, status_changed
from tests.unit.retention.test_metric_totals import (
    _read_model,
    _record,
    apply_history,
    periods,
)

SHORTER = timedelta(days=20)
CHUNK = 7
NEW = ("h-031", "h-301")


async def _start(database: Database, lookback: timedelta) -> bool:
    async with database.transaction() as session:
        return await session.run_sync(lambda s: read_model.start_rebuild(s.connection(), lookback))


async def _step(database: Database) -> bool:
    async with database.transaction() as session:
        return await session.run_sync(lambda s: read_model.rebuild_step(s.connection(), CHUNK))


async def _cursor(database: Database) -> Any:
    async with database.sessions() as session:
        return await session.run_sync(lambda s: read_model._state(s.connection()))


async def _one_shot(database: Database, lookback: timedelta) -> tuple[list[Any], list[Any]]:
    async with database.transaction() as session:
        await session.run_sync(lambda s: read_model.rebuild(s.connection(), lookback))
    return await _read_model(database)


async def test_a_rebuild_in_chunks_gives_the_rows_and_totals_of_a_one_shot_rebuild(database: Database) -> None:
    await apply_history(database, 8, customers=40)
    before = await _read_model(database)

    assert await _start(database, SHORTER)
    steps = 0
    while await _step(database):
        steps += 1
    chunked = await _read_model(database)

    assert steps >= 40 // CHUNK  # several transactions, not one
    assert chunked != before  # the shorter look-back changed some warned rows
    assert await _cursor(database) == (SHORTER, None)
    assert await _one_shot(database, SHORTER) == chunked


async def test_an_event_committed_between_chunks_is_counted_with_the_new_look_back(database: Database) -> None:
    await apply_history(database, 9, customers=40)
    assert await _start(database, SHORTER)
    assert await _step(database) and await _step(database)
    lookback, cursor = await _cursor(database)
    assert (lookback, cursor) == (SHORTER, "h-13")  # h-00 .. h-13 rebuilt, the rest not yet

    # Mid-rebuild the metrics answer from the facts (the totals are part old, part new look-back).
    start, end = T0 - timedelta(days=60), T0 + timedelta(days=120)
    async with database.sessions() as session:
        assert await session.run_sync(lambda s: read_model.lookback_of(s.connection())) is None
        exact = await service.exact_metrics(session=session, start=start, end=end, group_by=None, lookback=SHORTER)
        answered = await service.metrics(session=session, start=start, end=end, group_by=None, lookback=SHORTER)
    assert answered == exact

    # A complaint, then a churn 10 days later (warned within 20 days), for a new customer on each side of the
    # cursor (h-031 sorts before h-13, h-301 after), and one more churn of a customer already rebuilt.
    consumer = EventConsumer(database, RetentionSettings(database_url=database.url), HANDLERS, ["crm.test.v1"])
    events: list[Any] = [status_changed("h-05", days=100.5)]
    for customer_id in NEW:
        events += [complaint(customer_id, minutes=100 * 1440), status_changed(customer_id, days=110)]
    await consumer.apply_batch([consumer.decode(_record(e, 10_000 + k)) for k, e in enumerate(events)])
    async with database.sessions() as session:
        mid = await service.metrics(session=session, start=start, end=end, group_by=None, lookback=SHORTER)
    assert mid[0].churned >= exact[0].churned + 2  # counted at once, from the facts

    while await _step(database):
        pass

    async with database.sessions() as session:
        assert await session.run_sync(lambda s: read_model.lookback_of(s.connection())) == SHORTER
    finished = await _read_model(database)
    assert {r[0] for r in finished[0] if r[1] == "warned"} >= set(NEW)
    assert await _one_shot(database, SHORTER) == finished
    await assert_same_as_exact_with(database, SHORTER)


async def assert_same_as_exact_with(database: Database, lookback: timedelta) -> None:
    """The read model's answer equals the facts' for every period and grouping, with this look-back."""
    for start, end in periods(T0):
        for group_by in (None, "tier", "segment", "rule"):
            async with database.sessions() as session:
                fast = await service.metrics(
                    session=session, start=start, end=end, group_by=group_by, lookback=lookback
                )
                exact = await service.exact_metrics(
                    session=session, start=start, end=end, group_by=group_by, lookback=lookback
                )
            assert fast == exact, (start, end, group_by)
