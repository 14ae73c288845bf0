"""The SSE stream of alert changes: live fan-out and Last-Event-ID replay from the change log."""

import asyncio

from sqlalchemy import insert

from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.models import AlertChange
from services.retention.handlers import HANDLERS
from services.retention.stream import Broadcaster, Change, emittable
from tests.unit.retention.events import complaint


async def _raise(database: Database, *events) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


def _ids(chunks: list[bytes]) -> list[int]:
    return [int(line.split(b": ")[1]) for c in chunks for line in c.split(b"\n") if line.startswith(b"id: ")]


async def test_a_reconnecting_client_gets_every_change_after_its_last_event_id(database: Database):
    await _raise(database, complaint("a", minutes=0), complaint("a", minutes=1), complaint("b", minutes=2))
    hub = Broadcaster(database, poll_interval_s=0.05, gap_wait_s=5)
    await hub.start()
    stream = hub.events(last_event_id=1, keepalive_s=5)
    chunks = [await anext(stream) for _ in range(3)]  # two replayed changes, then the connected comment
    assert _ids(chunks) == [2, 3]
    assert b"event: alert.updated" in chunks[0]
    assert chunks[2] == b": connected\n\n"
    await stream.aclose()
    await hub.stop()


async def test_a_connected_client_receives_new_changes_once(database: Database):
    hub = Broadcaster(database, poll_interval_s=0.05, gap_wait_s=5)
    await hub.start()
    stream = hub.events(last_event_id=None, keepalive_s=5)
    assert await anext(stream) == b": connected\n\n"
    await _raise(database, complaint("a", minutes=0))
    chunk = await asyncio.wait_for(anext(stream), 5)
    assert b"event: alert.raised" in chunk
    assert b'"customer_id":"a"' in chunk
    await hub.poll()  # polling again sends nothing twice
    assert hub.subscribers and all(s.queue.empty() for s in hub.subscribers)
    await stream.aclose()
    await hub.stop()
    assert not hub.subscribers


def _changes(*seqs: int) -> list[Change]:
    return [Change(seq, "alert.raised", {}) for seq in seqs]


def test_changes_go_out_in_seq_order_and_wait_at_a_gap():
    gaps: dict[int, float] = {}
    out, through = emittable(_changes(1, 2, 4, 5), 0, gaps, now=10.0, gap_wait_s=5)
    assert ([c.seq for c in out], through, gaps) == ([1, 2], 2, {3: 10.0})

    out, through = emittable(_changes(3, 4, 5), through, gaps, now=11.0, gap_wait_s=5)
    assert ([c.seq for c in out], through, gaps) == ([3, 4, 5], 5, {})


def test_a_gap_no_commit_fills_is_given_up_after_the_wait():
    gaps: dict[int, float] = {}
    emittable(_changes(1, 3), 0, gaps, now=10.0, gap_wait_s=5)
    out, through = emittable(_changes(3), 1, gaps, now=14.9, gap_wait_s=5)
    assert (out, through) == ([], 1)
    out, through = emittable(_changes(3), 1, gaps, now=15.0, gap_wait_s=5)
    assert ([c.seq for c in out], through, gaps) == ([3], 3, {})


async def _log(database: Database, *seqs: int) -> None:
    """Change-log rows with chosen seqs, as transactions committing out of seq order leave them."""
    async with database.transaction() as session:
        await session.execute(
            insert(AlertChange.__table__),  # type: ignore[attr-defined]
            [{"seq": s, "alert_id": f"a-{s}", "event_type": "alert.raised", "at": utc_now(), "data": {}} for s in seqs],
        )


async def test_a_change_committed_behind_a_higher_one_is_not_skipped_live_or_on_resume(database: Database):
    now = [100.0]
    hub = Broadcaster(database, poll_interval_s=60, gap_wait_s=5, clock=lambda: now[0])
    await hub.start()
    live = hub.events(last_event_id=None, keepalive_s=60)
    assert await anext(live) == b": connected\n\n"

    await _log(database, 1, 3)  # 2 is drawn but not committed yet
    await hub.poll()
    assert _ids([await asyncio.wait_for(anext(live), 5)]) == [1]
    resumed = hub.events(last_event_id=1, keepalive_s=60)
    assert await anext(resumed) == b": connected\n\n"  # 3 is not offered before 2

    await _log(database, 2)
    await hub.poll()
    assert _ids([await asyncio.wait_for(anext(live), 5) for _ in range(2)]) == [2, 3]
    assert _ids([await asyncio.wait_for(anext(resumed), 5) for _ in range(2)]) == [2, 3]
    await live.aclose()
    await resumed.aclose()
    await hub.stop()


async def test_a_slow_subscriber_is_dropped_at_its_queue_bound_and_resumes_without_a_gap(database: Database):
    hub = Broadcaster(database, poll_interval_s=60, gap_wait_s=0, queue_max=2)
    await hub.start()
    slow = hub.events(last_event_id=None, keepalive_s=5)
    assert await anext(slow) == b": connected\n\n"
    # Three changes for a queue of two, and the client reads nothing meanwhile.
    await _raise(database, complaint("a", minutes=0), complaint("b", minutes=1), complaint("c", minutes=2))
    await hub.poll()
    assert not hub.subscribers  # dropped: nothing more is buffered for it
    assert [chunk async for chunk in slow] == []  # its stream ends; memory stays bounded
    # Reconnecting with the last id it got (none past the start: 0) replays everything it missed.
    resumed = hub.events(last_event_id=0, keepalive_s=5)
    assert _ids([await anext(resumed) for _ in range(3)]) == [1, 2, 3]
    await resumed.aclose()
    await hub.stop()
