"""The relay's PostgreSQL form on the real server: a deferred mark and the next read in one statement."""

from __future__ import annotations

from servicekit.db import Database
from tests.statements import statements_sent
from tests.unit.servicekit.test_outbox_relay import (
    _unpublished,
    deferred_mark_rides_with_the_next_read,
    first_round_with_a_commit_while_publishing,
)


async def test_a_deferred_mark_rides_with_the_next_read_on_postgresql(scratch_database: Database):
    await deferred_mark_rides_with_the_next_read(scratch_database)


async def test_the_next_round_marks_and_reads_in_one_statement(scratch_database: Database):
    relay, producer = await first_round_with_a_commit_while_publishing(scratch_database)

    with statements_sent(scratch_database.engine.sync_engine) as statements:
        # as the relay's loop runs a round: its mark is left for the next read (or the idle mark)
        assert await relay.publish_batch(producer, defer_mark=True, hold_mark=True) == 1  # type: ignore[arg-type]
    assert len(statements) == 1, statements
    assert statements[0].lstrip().startswith("WITH marked AS")
    assert await _unpublished(scratch_database) == ["c-3"]
    await relay.mark_acked()
    assert await _unpublished(scratch_database) == []
    assert [k for _, k in producer.sent] == [b"c-1", b"c-2", b"c-3"]
