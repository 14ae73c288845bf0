"""Writing events into the outbox inside the caller's transaction. Never commits, never calls Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.context import current_correlation_id
from servicekit.db import OUTBOX_DIRTY, OUTBOX_NOTIFIED
from servicekit.events.envelope import CONTENT_TYPE, CloudEvent, EventData
from servicekit.tables import OUTBOX

Headers = list[tuple[str, str]]
NOTIFY_CHANNEL = "outbox"


async def enqueue(session: AsyncSession, *events: EventData) -> list[CloudEvent]:
    """Add events to the outbox; they are published only if the caller's transaction commits."""
    source = session.info.get("source") or "/crm"
    correlation_id = current_correlation_id()
    envelopes = [CloudEvent.wrap(e, source=source, correlation_id=correlation_id) for e in events]
    now = datetime.now(UTC)
    rows = [
        {
            "topic": data.topic,
            "key": envelope.subject,
            "payload": envelope.to_json(),
            "headers": [["content-type", CONTENT_TYPE], ["ce_type", envelope.type], ["ce_id", envelope.id]],
            "event_id": envelope.id,
            "created_at": now,
        }
        for data, envelope in zip(events, envelopes, strict=True)
    ]
    await _insert(session, rows)
    return envelopes


async def enqueue_raw(
    session: AsyncSession, *, topic: str, key: str | None, payload: bytes, headers: Sequence[tuple[str, str]]
) -> None:
    """Add an opaque message (e.g. a dead-lettered original) to the outbox."""
    row = {
        "topic": topic,
        "key": key,
        "payload": payload,
        "headers": [list(h) for h in headers],
        "event_id": None,
        "created_at": datetime.now(UTC),
    }
    await _insert(session, [row])


async def _insert(session: AsyncSession, rows: Iterable[dict]) -> None:
    rows = list(rows)
    if not rows:
        return
    await session.execute(insert(OUTBOX), rows)
    session.info[OUTBOX_DIRTY] = True
    # PostgreSQL delivers NOTIFY at commit, so a relay in another process wakes exactly then.
    if session.info.get("postgres") and not session.info.get(OUTBOX_NOTIFIED):
        await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        session.info[OUTBOX_NOTIFIED] = True
