"""History (events older than the horizon) in one consumer batch: every score kept, one published per customer."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import unit_of_work
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.main import metadata
from services.scoring.scores.handlers import is_history
from services.scoring.scores.models import CurrentScore, ScoreRecord
from services.scoring.settings import get_settings
from tests.unit.scoring import events as ev

YEAR = -365  # days from ev.T0


def _history() -> list[Any]:
    """Three customers' purchases, complaints and a survey, interleaved in time, a year and more back."""
    out: list[Any] = []
    for c in range(3):
        cid = f"c{c}"
        out += [ev.purchase(cid, id=f"{cid}-p{k}", days=YEAR + k * (4 + c), amount=30 + c) for k in range(4)]
        out += [ev.complaint(cid, id=f"{cid}-k", days=YEAR + 20, severity="high")]
        out.append(ev.survey(cid, id=f"{cid}-s", score=c, days=YEAR + 21))
    out.sort(key=lambda e: e.data.model_dump().get("occurred_at") or e.data.model_dump().get("answered_at"))
    return out


async def _database(tmp_path: Any, name: str) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / name}", source="/crm/scoring")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return database


async def _apply(database: Database, batches: list[list[Any]]) -> None:
    for batch in batches:
        async with unit_of_work(database) as uow:
            await BEFORE_BATCH(uow, batch)
            for event in batch:
                await HANDLERS[event.envelope.type](uow, event)


async def _current(database: Database) -> dict[str, dict[str, Any]]:
    async with database.sessions() as session:
        rows = (await session.execute(select(CurrentScore))).scalars().all()
    return {r.customer_id: r.model_dump(exclude={"score_id", "computed_at", "caused_by"}) for r in rows}


async def _counts(database: Database) -> tuple[int, list[dict[str, Any]]]:
    async with database.sessions() as session:
        history = len((await session.execute(select(ScoreRecord.id))).all())
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
    return history, [orjson.loads(p)["data"] for p in payloads]


async def _history_rows(database: Database) -> list[tuple[Any, ...]]:
    async with database.sessions() as session:
        query = select(ScoreRecord.customer_id, ScoreRecord.as_of, ScoreRecord.churn_risk, ScoreRecord.snapshot)
        return sorted((await session.execute(query.order_by(ScoreRecord.id))).all(), key=lambda r: (r[0], r[1]))


async def test_history_in_one_batch_keeps_every_score_and_publishes_one_per_customer(tmp_path, monkeypatch):
    stream = _history()
    monkeypatch.setattr(get_settings(), "history_horizon_days", 0.0)  # every event scored on its own
    one_by_one = await _database(tmp_path, "alone.db")
    await _apply(one_by_one, [[e] for e in stream])
    monkeypatch.setattr(get_settings(), "history_horizon_days", 30.0)
    merged = await _database(tmp_path, "merged.db")
    await _apply(merged, [stream])

    assert await _current(merged) == await _current(one_by_one)
    # The score history (what training reads as of each event) is that of scoring each event alone.
    assert await _history_rows(merged) == await _history_rows(one_by_one)
    history, events = await _counts(merged)
    assert history == len(stream) and sorted(e["customer_id"] for e in events) == ["c0", "c1", "c2"]
    # Each published score is the customer's last, after the one its consumers held before (none here).
    current = await _current(merged)
    assert all(
        e["previous"] is None and e["current"]["churn_risk"] == current[e["customer_id"]]["churn_risk"] for e in events
    )
    assert len((await _counts(one_by_one))[1]) == len(stream)  # scored alone: one score.updated per event
    await one_by_one.dispose()
    await merged.dispose()


async def test_a_live_event_between_history_keeps_its_own_score(tmp_path):
    database = await _database(tmp_path, "live.db")
    now = datetime.now(UTC)
    live = ev.received(ev.purchase("c0", id="live").data.model_copy(update={"occurred_at": now}))
    old = [ev.purchase("c0", id=f"old-{k}", days=YEAR + k) for k in range(3)]
    batch = [old[0], old[1], live, old[2]]
    await _apply(database, [batch])

    history, events = await _counts(database)
    # old-0 is carried by old-1; the live purchase and the history after it are published on their own.
    assert history == 4 and len(events) == 3
    await database.dispose()


@pytest.mark.parametrize(
    ("age_days", "horizon_days", "expected"), [(31, 30, True), (29, 30, False), (400, 0, False), (1, 0.5, True)]
)
def test_an_event_is_history_when_older_than_the_horizon(age_days, horizon_days, expected):
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert is_history(now - timedelta(days=age_days), horizon_days, now) is expected
