"""Transactional outbox: events are written with the state change and published by a relay."""

from servicekit.outbox.relay import OutboxRelay
from servicekit.outbox.writer import (
    enqueue,
    enqueue_many,
    enqueue_raw,
    insert_with_events,
    insert_with_events_on_driver,
)

__all__ = [
    "OutboxRelay",
    "enqueue",
    "enqueue_many",
    "enqueue_raw",
    "insert_with_events",
    "insert_with_events_on_driver",
]
