"""A consumer batch's features rows are plain column values: read in one query, new ones inserted in one
statement and changed ones updated in one, with no ORM features objects in the session."""

from typing import Any

import orjson
from sqlalchemy import event as sa_event
from sqlalchemy import select

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import unit_of_work
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.scores.feature_rows import changed_values, new_row
from services.scoring.scores.features import STATE_FIELDS, load_state
from services.scoring.scores.models import CustomerFeatures
from tests.unit.scoring import events as ev


async def _database(tmp_path: Any) -> Database:
    from services.scoring.main import metadata

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}", source="/crm/scoring")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return database


async def _apply(database: Database, events: list[Any], statements: list[str]) -> int:
    """Apply a batch as the consumer does; the ORM features objects its session held before commit."""
    statements.clear()
    async with unit_of_work(database) as uow:
        await BEFORE_BATCH(uow, events)
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)
        held = sum(isinstance(o, CustomerFeatures) for o in uow.session.identity_map.values())
        held += sum(isinstance(o, CustomerFeatures) for o in uow.session.new)
    return held


async def _stored(database: Database) -> dict[str, tuple[int, int, int]]:
    async with database.sessions() as session:
        rows = (await session.execute(select(CustomerFeatures))).scalars().all()
    return {r.customer_id: (r.purchases, r.complaints_total, r.open_complaints) for r in rows}


async def test_new_and_changed_features_rows_are_written_in_one_statement_each_without_orm_objects(tmp_path):
    database = await _database(tmp_path)
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    # Three new customers, each with two events in the batch: the second builds on the first.
    first = [ev.purchase(f"c{c}", id=f"c{c}-p1", days=1, amount=10) for c in range(3)]
    first += [ev.complaint(f"c{c}", id=f"c{c}-k1", days=2, severity="high") for c in range(3)]
    assert await _apply(database, first, statements) == 0
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO CUSTOMER_FEATURES")]
    assert len(inserts) == 1, inserts
    assert await _stored(database) == {f"c{c}": (1, 1, 1) for c in range(3)}

    # The next batch changes the stored rows in different ways, and sees what the first wrote.
    second = [ev.purchase("c0", id="c0-p2", days=3, amount=20), ev.complaint("c1", id="c1-k2", days=3)]
    second += [ev.complaint_updated("c2", id="c2-k1", status="resolved", days=3)]
    assert await _apply(database, second, statements) == 0
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE CUSTOMER_FEATURES")]
    assert len(updates) == 1, updates
    assert not [s for s in statements if s.lstrip().upper().startswith("INSERT INTO CUSTOMER_FEATURES")]
    assert await _stored(database) == {"c0": (2, 1, 1), "c1": (1, 2, 2), "c2": (1, 1, 0)}
    await database.dispose()


async def test_a_redelivered_interaction_changes_no_column_of_its_row(tmp_path):
    database = await _database(tmp_path)
    statements: list[str] = []
    sa_event.listen(
        database.engine.sync_engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql)
    )
    await _apply(database, [ev.purchase("c0", id="c0-p1", days=1, amount=10)], statements)
    # The same interaction under a new event id: features.py drops it, so nothing of the row is written.
    again = ev.purchase("c0", id="c0-p1", days=1, amount=10)
    await _apply(database, [again], statements)
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE CUSTOMER_FEATURES")]
    assert await _stored(database) == {"c0": (1, 0, 0)}
    await database.dispose()


def test_changed_values_names_only_the_columns_the_state_changed():
    row = new_row("c9")
    state = load_state({name: row[name] for name in STATE_FIELDS})
    assert changed_values(row, state) == {}
    state.purchases += 1
    state.seen_ids.append("i-1")
    assert changed_values(row, state) == {"purchases": 1, "seen_ids": ["i-1"]}
    assert row["purchases"] == 0 and row["seen_ids"] == []  # the row itself is left as it was


def test_new_rows_do_not_share_their_mutable_defaults():
    one, two = new_row("a"), new_row("b")
    one["seen_ids"].append("x")
    one["attributes"]["k"] = 1
    assert two["seen_ids"] == [] and two["attributes"] == {}
    assert (one["customer_id"], two["customer_id"]) == ("a", "b")


async def test_a_batch_takes_its_customers_current_scores_from_the_preload_and_publishes_them_as_previous(tmp_path):
    database = await _database(tmp_path)
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    await _apply(database, [ev.purchase(f"c{c}", id=f"c{c}-p1", days=1, amount=10) for c in range(3)], statements)
    first = {u["customer_id"]: u["current"] for u in await _score_updates(database)}
    await _apply(
        database, [ev.complaint(f"c{c}", id=f"c{c}-k1", days=2, severity="high") for c in range(3)], statements
    )
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "current_scores" in s]
    assert len(reads) == 1 and "customer_features" in reads[0], reads  # the preload's join, nothing more
    second = (await _score_updates(database))[3:]
    assert {u["customer_id"]: u["previous"] for u in second} == first
    await database.dispose()


async def _score_updates(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
    return [orjson.loads(p)["data"] for p in payloads]


def test_new_rows_hold_the_defaults_in_containers_of_their_own():
    first, second = new_row("c-1"), new_row("c-2")
    assert (first["customer_id"], second["customer_id"]) == ("c-1", "c-2")
    assert {k: v for k, v in first.items() if k not in ("customer_id", "updated_at")} == {
        k: v for k, v in second.items() if k not in ("customer_id", "updated_at")
    }
    containers = [name for name, value in first.items() if isinstance(value, list | dict)]
    assert containers  # purchases, complaints, attributes...
    for name in containers:
        assert first[name] is not second[name], name
    first["recent_purchases"].append({"amount": 1})
    first["attributes"]["plan"] = "pro"
    assert new_row("c-3")["recent_purchases"] == [] and new_row("c-3")["attributes"] == {}
