"""The consumer of loyalty.tier_changed (the member-tier replica campaigns target) and the consumer side of
waits that end early (an event wakes the waiting enrolment), through the retention HANDLERS."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from contracts.customer import LoyaltyTierChanged
from servicekit.clock import utc_now
from servicekit.db import Database
from services.retention.catalog.service import ActivePlaybook
from services.retention.member_tiers import service as member_tiers
from services.retention.member_tiers.models import MemberTier
from services.retention.sequences import core as sq
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.models import Enrolment
from tests.unit.retention.events import T0, complaint, erased, received
from tests.unit.retention.test_handlers import apply


def tier_changed(tier: str | None, previous: str | None, minutes: int, customer_id: str = "c-1"):
    data = LoyaltyTierChanged(
        customer_id=customer_id,
        tier=tier,
        previous_tier=previous,
        benefits=["free_shipping"] if tier else [],
        lifetime_points=1000,
        balance=500,
        changed_at=T0 + timedelta(minutes=minutes),
    )
    return received(data, "/crm/customer")


async def _rows(database: Database) -> dict[str, MemberTier]:
    async with database.sessions() as session:
        return {r.customer_id: r for r in (await session.execute(select(MemberTier))).scalars()}


async def test_the_latest_tier_is_kept_and_erasure_removes_it(database: Database):
    await apply(database, tier_changed("silver", "member", 10), tier_changed("gold", "silver", 20))
    await apply(database, tier_changed("silver", "member", 10))  # redelivered late: older, ignored
    row = (await _rows(database))["c-1"]
    assert (row.tier, row.benefits) == ("gold", ["free_shipping"])
    async with database.sessions() as session:
        assert await member_tiers.tiers_of(session, ["c-1", "c-2"]) == {"c-1": "gold", "c-2": member_tiers.NO_TIER}
    await apply(database, erased())
    assert await _rows(database) == {}
    await apply(database, tier_changed("gold", "silver", 30))  # after erasure: nothing comes back
    assert await _rows(database) == {}


async def test_a_complaint_wakes_a_wait_that_ends_on_it(database: Database):
    definition = sq.SequenceDef.model_validate(
        {
            "steps": [
                {"id": "wait", "kind": "wait", "hours": 72, "until": ["complaint_opened"]},
                {"id": "call", "kind": "task", "action": "call_owner"},
            ],
            "stop_when": {"purchased": False},
        }
    )
    playbook = ActivePlaybook(reason="watch", control_share=0.0, steps=(), sequences={"default": definition})
    now = utc_now().replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)  # the wake compares with the clock: the wait began an hour ago
    async with database.transaction() as session:
        await sequence_engine.enrol(
            session, playbook=playbook, customer_id="c-1", alert_id=None, tier=None, owner="am", now=start
        )
    await sequence_engine.run_due(database, batch_size=10, now=start)  # parked at the wait, registered
    minutes = int((now - T0) / timedelta(minutes=1))
    await apply(database, complaint(minutes=minutes))  # handled as before, and the wait is woken
    async with database.sessions() as session:
        enrolment = (await session.execute(select(Enrolment).where(Enrolment.reason == "watch"))).scalar_one()
    assert enrolment.due_at is not None and enrolment.due_at < start + timedelta(hours=72)
    await sequence_engine.run_due(database, batch_size=10, now=utc_now())
    async with database.sessions() as session:
        enrolment = (await session.execute(select(Enrolment).where(Enrolment.reason == "watch"))).scalar_one()
    assert enrolment.status == "completed"
    trail = [(t["step"], t.get("result")) for t in enrolment.trail]
    assert ("wait", "ended_by:complaint_opened") in trail and ("call", "created") in trail
