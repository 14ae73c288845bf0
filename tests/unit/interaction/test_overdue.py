import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from servicekit.db import Database
from services.interaction.complaints.models import ComplaintTransition
from services.interaction.complaints.service import flag_overdue_complaints, transition_complaint
from services.interaction.complaints.sla import ComplaintStatus
from services.interaction.interactions.models import Interaction, InteractionCreate
from services.interaction.interactions.service import record_interaction
from tests.statements import statements_sent
from tests.unit.interaction.conftest import SLA_HOURS, FakeCustomerService, outbox_events

NOW = datetime.now(UTC)


async def complaint(database: Database, severity: str, opened: datetime) -> str:
    async with database.transaction() as session:
        data = InteractionCreate(customer_id="c-1", type="complaint", severity=severity, occurred_at=opened)
        interaction, _ = await record_interaction(
            session=session, data=data, sla_hours=SLA_HOURS, lookup=FakeCustomerService("c-1").fetch
        )
        return interaction.id


async def flag(database: Database, now: datetime) -> list[str]:
    async with database.transaction() as session:
        return await flag_overdue_complaints(session=session, now=now)


async def overdue_events(database: Database) -> list[dict]:
    return [e for e in await outbox_events(database) if e["type"] == "complaint.overdue"]


async def test_a_complaint_past_its_sla_is_flagged_and_announced_once(database):
    late = await complaint(database, "critical", NOW - timedelta(hours=5))  # 4 h SLA
    in_time = await complaint(database, "critical", NOW - timedelta(hours=3))

    assert await flag(database, NOW) == [late]
    assert await flag(database, NOW + timedelta(minutes=1)) == []  # already flagged: nothing again

    [event] = await overdue_events(database)
    assert (event["key"], event["data"]["complaint_id"], event["data"]["severity"]) == ("c-1", late, "critical")
    assert event["data"]["status"] == "open"
    async with database.sessions() as session:
        flagged = {i.id: i.overdue_at for i in (await session.execute(select(Interaction))).scalars()}
    assert flagged[late] is not None and flagged[in_time] is None


async def test_a_complaint_with_a_verdict_or_a_solution_is_not_overdue(database):
    rejected = await complaint(database, "critical", NOW - timedelta(hours=5))
    acknowledged = await complaint(database, "critical", NOW - timedelta(hours=5))
    async with database.transaction() as session:
        for to in ("acknowledged", "rejected"):
            change = ComplaintTransition(to=ComplaintStatus(to))
            await transition_complaint(session=session, complaint_id=rejected, change=change)
        change = ComplaintTransition(to=ComplaintStatus.acknowledged)
        await transition_complaint(session=session, complaint_id=acknowledged, change=change)
    assert await flag(database, NOW) == [acknowledged]  # acknowledging does not stop the clock


async def test_two_watchers_at_once_announce_each_overdue_complaint_once(database, tmp_path: Path):
    ids = {await complaint(database, "high", NOW - timedelta(days=2)) for _ in range(20)}
    # A second engine on the same file: another process's watcher.
    other = Database(database.url, source="/crm/interaction")
    try:
        first, second = await asyncio.gather(flag(database, NOW), flag(other, NOW))
    finally:
        await other.dispose()
    assert set(first) | set(second) == ids
    assert not set(first) & set(second)
    assert sorted(e["data"]["complaint_id"] for e in await overdue_events(database)) == sorted(ids)


async def test_a_backlog_of_late_complaints_is_flagged_in_one_update_earliest_due_first_a_page_at_a_time(database):
    # An import brings complaints still open from long ago: the sweep must not take a round trip each.
    opened = [NOW - timedelta(days=400 - day) for day in (7, 3, 9, 1, 5, 2, 8, 4, 6, 0)]
    ids = {await complaint(database, "medium", at): at for at in opened}
    by_due = sorted(ids, key=lambda i: (ids[i], i))

    async with database.transaction() as session:
        with statements_sent(database.engine.sync_engine) as sent:
            first = await flag_overdue_complaints(session=session, now=NOW, limit=6)
    updates = [s for s in sent if s.startswith("UPDATE")]
    assert len(updates) == 1 and not [s for s in sent if s.startswith("SELECT")]
    assert first == by_due[:6]
    second = await flag(database, NOW)
    assert second == by_due[6:]
    assert await flag(database, NOW) == []

    events = await overdue_events(database)
    assert [e["data"]["complaint_id"] for e in events] == by_due
    assert {e["data"]["severity"] for e in events} == {"medium"}
    assert all(e["data"]["status"] == "open" and e["key"] == "c-1" for e in events)
