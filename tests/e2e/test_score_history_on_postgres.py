"""The folded score-history read (signals.window) on real PostgreSQL: the per-key LATERAL lookup, the
window functions over it and the own-ids array give the rules what the full read gave."""

from __future__ import annotations

import pytest

from tests.e2e.test_metric_totals_on_postgres import migrated
from tests.unit.retention.test_score_history_window import assert_folded_history_gives_the_rules_the_same


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_folded_history_gives_the_rules_what_the_full_read_gave(postgres: None, seed: int) -> None:
    async with migrated() as (database, _):
        await assert_folded_history_gives_the_rules_the_same(database, seed)
