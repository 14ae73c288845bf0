"""The sequence engine on the real PostgreSQL server: two engines claiming the same due steps concurrently
run each exactly once; a redelivered enrolment enrols once; a wait survives a restart of the engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import func, select, text

from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.migrations import upgrade
from services.retention.catalog.service import ActivePlaybook
from services.retention.main import SPEC
from services.retention.models import metadata
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.core import SequenceDef
from services.retention.sequences.models import Enrolment
from services.retention.tasks.models import Task
from services.retention.touches.models import Touch
from tests.e2e.conftest import new_database

CUSTOMERS = 300
DEFINITION = SequenceDef.model_validate(
    {
        "steps": [
            {"id": "call", "kind": "task", "action": "call_owner"},
            {"id": "wait", "kind": "wait", "hours": 72},
            {"id": "replied", "kind": "branch", "when": {"replied": True}, "then": "stop"},
            {"id": "offer", "kind": "touch", "action": "loyalty_offer"},
        ]
    }
)
PLAYBOOK = ActivePlaybook(reason="risk_high", control_share=0.0, steps=(), sequences={"default": DEFINITION})


@asynccontextmanager
async def migrated() -> AsyncIterator[str]:
    async with new_database() as url:
        await asyncio.to_thread(upgrade, SPEC.migrations_dir, url, SPEC.name)
        yield url


async def scalar(database: Database, query: object) -> int:
    async with database.sessions() as session:
        return int((await session.execute(query)).scalar_one())  # type: ignore[call-overload]


async def outbox_types(database: Database) -> list[str]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    return [json.loads(p)["type"] for p in payloads]


async def enrol_all(database: Database, now: object) -> None:
    async with database.transaction() as session:
        for i in range(CUSTOMERS):
            await sequence_engine.enrol(
                session, playbook=PLAYBOOK, customer_id=f"c{i}", alert_id=None, tier="iron", owner="am", now=now
            )  # type: ignore[arg-type]


async def test_two_engines_run_each_due_step_exactly_once_and_waits_survive_a_restart(postgres: None):
    now = utc_now()
    async with migrated() as url:
        one, two = Database(url), Database(url)
        try:
            # the same trigger delivered twice, concurrently, through both replicas
            await asyncio.gather(enrol_all(one, now), enrol_all(two, now))
            assert await scalar(one, select(func.count()).select_from(Enrolment)) == CUSTOMERS

            first, second = await asyncio.gather(
                sequence_engine.run_due(one, batch_size=7, now=now),
                sequence_engine.run_due(two, batch_size=7, now=now),
            )
            assert first.claimed + second.claimed == CUSTOMERS
            assert first.claimed > 0 and second.claimed > 0  # both took part
            assert await scalar(one, select(func.count()).select_from(Task)) == CUSTOMERS
            assert await scalar(one, select(func.count(func.distinct(Task.customer_id)))) == CUSTOMERS
            assert sorted(await outbox_types(one)) == ["task.created"] * CUSTOMERS
            # nothing is due again until the wait ends
            again = await sequence_engine.run_due(two, batch_size=50, now=now + timedelta(hours=71))
            assert again.claimed == 0
        finally:
            await one.dispose()
            await two.dispose()

        # restart: new engines with nothing in memory pick the persisted timers up when they fall due
        one, two = Database(url), Database(url)
        try:
            later = now + timedelta(hours=72, seconds=1)
            first, second = await asyncio.gather(
                sequence_engine.run_due(one, batch_size=11, now=later),
                sequence_engine.run_due(two, batch_size=11, now=later),
            )
            assert first.claimed + second.claimed == CUSTOMERS
            types = await outbox_types(one)
            assert types.count("touch.requested") == CUSTOMERS
            assert await scalar(
                one, select(func.count()).select_from(Touch).where(Touch.action == "loyalty_offer")
            ) == (CUSTOMERS)
            done = text("SELECT count(*) FROM enrolments WHERE status = 'completed' AND due_at IS NULL")
            assert await scalar(one, done) == CUSTOMERS
        finally:
            await one.dispose()
            await two.dispose()
