"""The reduced fault-injection run (`make chaos` runs the full one): every scenario, a small stream.

deploy/test.sh runs this file on its own, after the end-to-end tests, on a fresh broker: it kills and
restarts that broker and restarts PostgreSQL, which no other test may see.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.chaos import SCENARIOS, port_offset, run_chaos
from bench.infra import Infra
from servicekit.settings import state_dir


@pytest.mark.e2e
async def test_no_interaction_is_lost_or_doubled_under_crashes_restarts_replays_and_poison():
    kafka_port = int(os.environ.get("KAFKA_PORT", "19092"))
    pg_port = int(os.environ.get("PG_PORT", "55433"))
    controller_port = int(os.environ.get("KAFKA_CONTROLLER_PORT", str(kafka_port + 1)))
    infra = Infra(
        Path(state_dir()),
        kafka_port=kafka_port,
        pg_port=pg_port,
        port_offset=port_offset(),
        db_prefix="chaos_",
        kafka_controller_port=controller_port,
    )
    infra.pg_ctl("reset-dbs")
    # At 15 interactions/s until the last scenario has run, however slow the machine (interactions=0: no cap).
    problems = await run_chaos(infra, interactions=0, rate=15, customers=20, repeat=1, scenarios=list(SCENARIOS))
    assert problems == []
