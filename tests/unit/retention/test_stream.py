"""The SSE stream of alert changes: live fan-out and Last-Event-ID replay from the change log."""

import asyncio

from servicekit.db import Database
from services.retention.handlers import HANDLERS
from services.retention.stream import Broadcaster
from tests.unit.retention.events import complaint


async def _raise(database: Database, *events) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](session, event)


def _ids(chunks: list[bytes]) -> list[int]:
    return [int(line.split(b": ")[1]) for c in chunks for line in c.split(b"\n") if line.startswith(b"id: ")]


async def test_a_reconnecting_client_gets_every_change_after_its_last_event_id(database: Database):
    await _raise(database, complaint("a", minutes=0), complaint("a", minutes=1), complaint("b", minutes=2))
    hub = Broadcaster(database, poll_interval_s=0.05)
    await hub.start()
    stream = hub.events(last_event_id=1, keepalive_s=5)
    chunks = [await anext(stream) for _ in range(3)]  # two replayed changes, then the connected comment
    assert _ids(chunks) == [2, 3]
    assert b"event: alert.updated" in chunks[0]
    assert chunks[2] == b": connected\n\n"
    await stream.aclose()
    await hub.stop()


async def test_a_connected_client_receives_new_changes_once(database: Database):
    hub = Broadcaster(database, poll_interval_s=0.05)
    await hub.start()
    stream = hub.events(last_event_id=None, keepalive_s=5)
    assert await anext(stream) == b": connected\n\n"
    await _raise(database, complaint("a", minutes=0))
    chunk = await asyncio.wait_for(anext(stream), 5)
    assert b"event: alert.raised" in chunk
    assert b'"customer_id":"a"' in chunk
    await hub.poll()  # polling again sends nothing twice
    assert hub.subscribers and all(q.empty() for q in hub.subscribers)
    await stream.aclose()
    await hub.stop()
    assert not hub.subscribers
