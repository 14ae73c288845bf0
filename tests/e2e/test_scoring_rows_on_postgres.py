"""The scoring consumer's batch writes on the real server: features rows as plain rows (one INSERT, one
UPDATE), current scores and purchases each as one statement over arrays, current scores read with the
features rows (PostgreSQL takes other statement forms than SQLite, where the unit tests run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import unit_of_work
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.main import metadata
from services.scoring.scores.models import CurrentScore, CustomerFeatures, Purchase
from tests.platform import new_database
from tests.unit.scoring import events as ev


@pytest.fixture
async def database(postgres: None) -> AsyncIterator[Database]:
    async with new_database() as url:
        database = Database(url, source="/crm/scoring")
        try:
            async with database.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            yield database
        finally:
            await database.dispose()


async def _apply(database: Database, events: list[Any], statements: list[str]) -> None:
    statements.clear()
    async with unit_of_work(database) as uow:
        await BEFORE_BATCH(uow, events)
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def _score_updates(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
    return [orjson.loads(p)["data"] for p in payloads]


def _starting(statements: list[str], prefix: str) -> list[str]:
    return [s for s in statements if " ".join(s.split()).upper().startswith(prefix)]


async def test_a_batch_writes_features_scores_and_purchases_in_one_statement_each(database: Database):
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)

    first = [ev.purchase(f"c{c}", id=f"c{c}-p1", days=1, amount=10 + c) for c in range(3)]
    first += [ev.complaint(f"c{c}", id=f"c{c}-k1", days=2, severity="high") for c in range(3)]
    await _apply(database, first, statements)
    assert len(_starting(statements, "INSERT INTO CUSTOMER_FEATURES")) == 1
    assert len(_starting(statements, "INSERT INTO CURRENT_SCORES")) == 1
    assert len(_starting(statements, "INSERT INTO PURCHASES")) == 1
    published = await _score_updates(database)
    last_of_first = {u["customer_id"]: u["current"] for u in published}

    # The same purchase again under a new event id, a new purchase, a complaint closed: stored rows change.
    second = [ev.purchase("c0", id="c0-p1", days=1, amount=10), ev.purchase("c0", id="c0-p2", days=3, amount=30)]
    second += [ev.complaint_updated("c1", id="c1-k1", status="resolved", days=3), ev.purchase("c2", id="c2-p2", days=3)]
    await _apply(database, second, statements)
    assert len(_starting(statements, "UPDATE CUSTOMER_FEATURES")) == 1
    assert not _starting(statements, "INSERT INTO CUSTOMER_FEATURES")
    assert [s for s in _starting(statements, "SELECT") if "current_scores" in s and "customer_features" not in s] == []

    async with database.sessions() as session:
        rows = (await session.execute(select(CustomerFeatures).order_by(CustomerFeatures.customer_id))).scalars()
        stored = {r.customer_id: (r.purchases, r.complaints_total, r.open_complaints) for r in rows}
        purchases = (await session.execute(select(func.count()).select_from(Purchase))).scalar_one()
        current = {r.customer_id: r.caused_by for r in (await session.execute(select(CurrentScore))).scalars()}
    assert stored == {"c0": (2, 1, 1), "c1": (1, 1, 0), "c2": (2, 1, 1)}
    assert purchases == 5  # c0-p1 once
    second_updates = (await _score_updates(database))[len(published) :]
    assert current == {u["customer_id"]: u["caused_by"] for u in second_updates}
    # Each customer's first score.updated of the batch has the previous batch's last score as its previous.
    firsts: dict[str, Any] = {}
    for update in second_updates:
        firsts.setdefault(update["customer_id"], update["previous"])
    assert firsts == last_of_first
