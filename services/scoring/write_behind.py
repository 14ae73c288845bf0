"""Write-behind for the rows every rescoring produces, so a consumer batch writes them in a few statements.

A rescoring appends a history row, replaces the customer's current row, adds a purchase (for purchases)
and enqueues score.updated. Written one by one, that is four or five round trips per event, which
dominated the CPU of the handler path (~3 ms per event on SQLite). Instead, the rows are collected in
the session and written in the same transaction just before it commits: one INSERT .. RETURNING for
the history, one upsert per customer for the current row (only the last score of the batch), one
multi-row insert for purchases and one for the outbox. Nothing is written if the transaction rolls
back, exactly as before; nothing is published before the commit, exactly as before.

The outbox rows are built with servicekit's CloudEvent and outbox table and flagged the way
servicekit.outbox.writer does (OUTBOX_DIRTY wakes the relay after commit; NOTIFY on PostgreSQL),
because the async `enqueue` cannot be awaited inside a synchronous before-commit hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from servicekit.context import current_correlation_id
from servicekit.db import OUTBOX_DIRTY, OUTBOX_NOTIFIED
from servicekit.events.envelope import CONTENT_TYPE, CloudEvent, EventData
from servicekit.outbox.writer import NOTIFY_CHANNEL
from servicekit.tables import OUTBOX
from services.scoring.models import CurrentScore, Purchase, ScoreRecord

PENDING = "scoring.pending"


@dataclass
class Pending:
    history: list[dict[str, Any]] = field(default_factory=list)  # in order; "customer_id" in each
    current: dict[str, int] = field(default_factory=dict)  # customer id -> index of its last history row
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)  # interaction id -> row
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def forget_customer(self, customer_id: str) -> None:
        """An erased customer's unwritten scores and purchases must not be written after its erasure."""
        self.history = [r for r in self.history if r["customer_id"] != customer_id]
        self.current = {}
        for i, row in enumerate(self.history):
            self.current[row["customer_id"]] = i
        self.purchases = {k: v for k, v in self.purchases.items() if v["customer_id"] != customer_id}


def pending(session: AsyncSession) -> Pending:
    found = session.info.get(PENDING)
    if found is None:
        found = session.info[PENDING] = Pending()
        sync = session.sync_session
        if not sync.info.get("scoring.write_behind_hooked"):
            sync.info["scoring.write_behind_hooked"] = True
            event.listen(sync, "before_commit", _write)
            event.listen(sync, "after_rollback", _discard)
    return found


def add_score(session: AsyncSession, row: dict[str, Any]) -> None:
    """A history row (with its "snapshot"); the current row is the customer's last one, minus the snapshot."""
    p = pending(session)
    p.history.append(row)
    p.current[row["customer_id"]] = len(p.history) - 1


def add_purchase(session: AsyncSession, row: dict[str, Any]) -> None:
    pending(session).purchases.setdefault(row["interaction_id"], row)


def add_event(session: AsyncSession, data: EventData) -> None:
    source = session.info.get("source") or "/crm"
    # Wrapped now: the correlation id is that of the event being handled, not of the commit.
    envelope = CloudEvent.wrap(data, source=source, correlation_id=current_correlation_id())
    pending(session).outbox.append(
        {
            "topic": data.topic,
            "key": envelope.subject,
            "payload": envelope.to_json(),
            "headers": [["content-type", CONTENT_TYPE], ["ce_type", envelope.type], ["ce_id", envelope.id]],
            "event_id": envelope.id,
            "created_at": datetime.now(UTC),
        }
    )


def forget_customer(session: AsyncSession, customer_id: str) -> None:
    found: Pending | None = session.info.get(PENDING)
    if found is not None:
        found.forget_customer(customer_id)


def flush_pending(session: Session) -> None:
    """Write what is pending (called before commit; also usable by code that reads in the same transaction)."""
    found: Pending | None = session.info.pop(PENDING, None)
    if found is None:
        return
    dialect = session.get_bind().dialect.name
    upsert_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    if found.history:
        table = ScoreRecord.__table__  # type: ignore[attr-defined]
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = list(session.execute(stmt, found.history).scalars())
        current_rows = []
        for i in found.current.values():
            row = {k: v for k, v in found.history[i].items() if k != "snapshot"}
            current_rows.append({**row, "score_id": ids[i]})
        table = CurrentScore.__table__  # type: ignore[attr-defined]
        upsert = upsert_insert(table)
        keep = {c.name: upsert.excluded[c.name] for c in table.columns if c.name != "customer_id"}
        session.execute(upsert.on_conflict_do_update(index_elements=["customer_id"], set_=keep), current_rows)
    if found.purchases:
        table = Purchase.__table__  # type: ignore[attr-defined]
        stmt = upsert_insert(table).on_conflict_do_nothing(index_elements=["interaction_id"])
        session.execute(stmt, list(found.purchases.values()))
    if found.outbox:
        session.execute(insert(OUTBOX), found.outbox)
        session.info[OUTBOX_DIRTY] = True
        if session.info.get("postgres") and not session.info.get(OUTBOX_NOTIFIED):
            session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
            session.info[OUTBOX_NOTIFIED] = True


def _write(session: Session) -> None:
    flush_pending(session)


def _discard(session: Session) -> None:
    session.info.pop(PENDING, None)
