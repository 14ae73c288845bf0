"""A read-model refresh reads its customers' facts, stored rows and look-back in one statement: the same facts
and rows as the separate reads (read_model.load_facts, read_model._stored), on a random store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select

from servicekit.db import Database
from services.retention.outcomes import read_model
from services.retention.outcomes import refresh_reads as reads
from services.retention.outcomes.core import AlertFact, CustomerFact
from services.retention.replica.models import Customer
from tests.unit.retention.test_metric_totals import LOOKBACK, rebuild
from tests.unit.retention.test_metrics_paging import _seed_random

AT = datetime(2026, 3, 1, tzinfo=UTC)


def _tag(kind: int, customer_id: str, texts: tuple[Any, ...] = (), times: tuple[Any, ...] = (), n: Any = None):
    return (kind, customer_id, *texts, *[None] * (5 - len(texts)), *times, *[None] * (3 - len(times)), n)


def test_tagged_rows_assemble_into_each_customer_s_facts_in_the_order_asked() -> None:
    naive = datetime(2026, 3, 2)  # SQLite returns times without their zone
    rows = [
        _tag(reads.SCORE, "b", ("gold",)),
        _tag(reads.REPLICA, "a", ("", "smb"), (naive,)),
        _tag(reads.SCORE, "a", ("silver",)),
        _tag(reads.CHANGE, "a", ("churned",), (AT,)),
        _tag(reads.ALERT, "a", ("complaint", "rule-1", "saved"), (naive,), 1),
        _tag(reads.STORED, "a", ("alerts", None, "silver", "smb", "41"), (AT, AT, naive), 3),
        _tag(reads.STATE, "", n=86400),
    ]

    found = reads.assemble(rows, ["c", "b", "a"])

    at = naive.replace(tzinfo=UTC)
    assert found.facts == [
        (CustomerFact("b", tier="gold"), []),
        (
            CustomerFact("a", tier="silver", segment="smb", first_seen=at, status_changes=((AT, "churned"),)),
            [AlertFact("a", "complaint", at, "rule-1", "saved", True)],
        ),
    ]  # "c" is known to no table; a's empty replica tier falls back to the score's
    assert found.stored == {"a": [("a", "alerts", None, "silver", "smb", AT, AT, at, 3)]}
    assert found.row_ids == {"a": [41]}
    assert found.lookback == timedelta(days=1)


def test_without_a_state_row_the_look_back_is_unknown() -> None:
    assert reads.assemble([_tag(reads.SCORE, "a", ("gold",))], ["a"]).lookback is None


def _canonical(facts: list[tuple[CustomerFact, list[AlertFact]]]) -> list[tuple[CustomerFact, list[AlertFact]]]:
    """Status changes and alerts in a fixed order (each read returns them in no particular order)."""
    return [
        (
            CustomerFact(f.customer_id, f.tier, f.segment, f.first_seen, tuple(sorted(f.status_changes))),
            sorted(alerts, key=repr),
        )
        for f, alerts in facts
    ]


def _both_ways(conn: Connection, ids: list[str]) -> tuple[Any, Any]:
    folded = reads.read(conn, ids, with_state=True)
    separate = list(read_model.load_facts(conn, ids)), read_model._stored(conn, ids), read_model.lookback_of(conn)
    stored = {i: sorted(rows, key=repr) for i, rows in folded.stored.items()}
    assert {i: len(ids) for i, ids in folded.row_ids.items()} == {i: len(rows) for i, rows in folded.stored.items()}
    expected_stored = {i: sorted(rows, key=repr) for i, rows in separate[1].items()}
    return (
        (_canonical(folded.facts), stored, folded.lookback),
        (_canonical(separate[0]), expected_stored, separate[2]),
    )


async def assert_one_read_equals_the_separate_reads(database: Database, seed: int) -> None:
    await _seed_random(database, seed, customers=300)
    await rebuild(database)  # stored rows for every customer
    rng = random.Random(seed)
    async with database.sessions() as session:
        known = list((await session.execute(select(Customer.customer_id))).scalars())
        samples = [rng.sample(known, k) + [f"r-{n:04d}" for n in rng.sample(range(400), 20)] for k in (1, 2, 40)]
        samples.append(sorted({f"r-{n:04d}" for n in range(400)}))  # unknown ids and those with no replica
        for ids in samples:
            folded, separate = await session.run_sync(lambda s, ids=ids: _both_ways(s.connection(), ids))
            assert folded == separate
        assert len(folded[0]) > 200 and len(folded[1]) > 200 and folded[2] == LOOKBACK  # the last, every id


@pytest.mark.parametrize("seed", [1, 2])
async def test_one_read_gives_the_facts_rows_and_look_back_of_the_separate_reads(database: Database, seed: int) -> None:
    await assert_one_read_equals_the_separate_reads(database, seed)
