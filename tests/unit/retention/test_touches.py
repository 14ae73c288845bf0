"""Playbook steps that contact the customer pass consent and the contact policy; blocks are recorded."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from contracts.customer import ChannelConsent, ConsentChanged, FrequencyCap, QuietHours
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import resolve_alert
from services.retention.alerts.models import Alert, Outcome
from services.retention.handlers import HANDLERS
from services.retention.replica.models import Customer, CustomerScore
from services.retention.reports.models import CustomerFact
from services.retention.settings import get_settings
from services.retention.tasks.models import Task
from services.retention.touches.models import ConsentReplica, Touch
from tests.unit.retention.events import complaint, erased, received
from tests.unit.retention.test_handlers import apply

NOW = datetime.now(UTC)


def consent(customer_id: str = "c-1", version: int = 1, **fields) -> object:
    channels = {
        channel: ChannelConsent(status=status, legal_basis="consent", source="api", at=NOW)
        for channel, status in fields.pop("channels", {}).items()
    }
    data = ConsentChanged(customer_id=customer_id, version=version, channels=channels, changed_at=NOW, **fields)
    return received(data, "/crm/customer")


async def rows(database: Database, model):
    async with database.sessions() as session:
        return list((await session.execute(select(model))).scalars())


async def test_an_opted_out_channel_creates_no_task_and_records_the_block(database: Database):
    await apply(database, consent(channels={"phone": "opt_out", "email": "opt_in"}))
    await apply(database, complaint())  # severe complaint: service_recovery (internal) + call_owner (phone)
    tasks = await rows(database, Task)
    assert [t.action for t in tasks] == ["service_recovery"]
    [touch] = await rows(database, Touch)
    assert (touch.channel, touch.action, touch.allowed, touch.verdict, touch.task_id) == (
        "phone",
        "call_owner",
        False,
        "opted_out",
        None,
    )


async def test_without_consent_records_every_contact_is_allowed_and_recorded(database: Database):
    await apply(database, complaint())
    tasks = {t.action: t for t in await rows(database, Task)}
    assert set(tasks) == {"service_recovery", "call_owner"}
    [touch] = await rows(database, Touch)
    assert (touch.allowed, touch.verdict, touch.task_id) == (True, "allowed", tasks["call_owner"].id)


async def test_quiet_hours_on_the_customers_clock_block_the_call(database: Database):
    # call_owner is due 24 h from now: quiet hours around that local time in Tokyo
    due_local = (datetime.now(UTC) + timedelta(hours=24)).astimezone(ZoneInfo("Asia/Tokyo"))
    start = (due_local - timedelta(hours=2)).strftime("%H:%M")
    end = (due_local + timedelta(hours=2)).strftime("%H:%M")
    await apply(database, consent(timezone="Asia/Tokyo", quiet_hours=QuietHours(start=start, end=end)))
    await apply(database, complaint())
    [touch] = await rows(database, Touch)
    assert (touch.allowed, touch.verdict) == (False, "quiet_hours")


async def test_the_cap_holds_over_repeated_alerts(database: Database):
    await apply(database, consent(frequency_cap=FrequencyCap(max_touches=2, window_days=7)))
    for minute in range(5):
        await apply(database, complaint(minutes=minute))
        for alert in await rows(database, Alert):
            if alert.status == "open":
                async with database.transaction() as session:
                    await resolve_alert(uow=UnitOfWork(session), alert_id=alert.id, outcome=Outcome.saved)
    touches = await rows(database, Touch)
    assert len(touches) == 5
    assert sorted((t.allowed, t.verdict) for t in touches) == [(False, "frequency_cap")] * 3 + [(True, "allowed")] * 2
    assert sum(t.action == "call_owner" for t in await rows(database, Task)) == 2


async def test_a_default_cap_from_settings(database: Database, monkeypatch):
    monkeypatch.setenv("RETENTION_CONTACT_DEFAULT_CAP", '{"max_touches": 0, "window_days": 1}')
    get_settings.cache_clear()
    await apply(database, complaint())
    [touch] = await rows(database, Touch)
    assert touch.verdict == "frequency_cap"


async def test_the_replica_keeps_the_latest_version_and_erasure_removes_it(database: Database):
    await apply(database, consent(version=2, channels={"email": "opt_out"}))
    await apply(database, consent(version=1, channels={"email": "opt_in"}))  # late: ignored
    [replica] = await rows(database, ConsentReplica)
    assert (replica.version, replica.channels) == (2, {"email": "opt_out"})
    await apply(database, erased("c-1"))
    assert await rows(database, ConsentReplica) == []
    await apply(database, consent(version=3, channels={"email": "opt_in"}))  # after the erasure: nothing
    assert await rows(database, ConsentReplica) == []


async def test_touches_route_and_blocked_report(app_db: tuple[httpx.AsyncClient, Database]):
    client, database = app_db
    async with database.transaction() as session:
        await HANDLERS["consent.changed"](UnitOfWork(session), consent(channels={"phone": "opt_out"}))
        await HANDLERS["complaint.opened"](UnitOfWork(session), complaint())
        await HANDLERS["complaint.opened"](UnitOfWork(session), complaint("c-2"))
    page = (await client.get("/customers/c-1/touches")).json()
    assert page["total"] == 1 and page["items"][0]["verdict"] == "opted_out"
    assert (await client.get("/customers/c-1/touches?allowed=true")).json()["total"] == 0
    assert (await client.get("/customers/nobody/touches")).json()["total"] == 0
    today = NOW.date()
    report = (
        await client.get(f"/reports/retention/touches-blocked?from={today}&to={today + timedelta(days=1)}")
    ).json()
    assert (report["allowed"], report["blocked"]) == (1, 1)
    assert report["by_verdict"] == {"opted_out": 1} and report["by_channel"] == {"phone": 1}
    assert report["items"] == [{"verdict": "opted_out", "channel": "phone", "blocked": 1}]
    csv = await client.get(f"/reports/retention/touches-blocked?from={today}&to={today + timedelta(days=1)}&format=csv")
    assert csv.text.splitlines() == ["verdict,channel,blocked", "opted_out,phone,1"]
    bad = await client.get(f"/reports/retention/touches-blocked?from={today}&to={today}")
    assert bad.status_code == 422


async def test_blocked_report_by_the_customers_tier_segment_owner_and_team(app_db: tuple[httpx.AsyncClient, Database]):
    """c-1 (alice, retail, gold, north): its call blocked; c-2 (bob, b2b, iron by its score, south): allowed."""
    client, database = app_db
    async with database.transaction() as session:
        session.add(Customer(customer_id="c-1", owner="alice", segment="retail", status="active", tier="gold"))
        session.add(Customer(customer_id="c-2", owner="bob", segment="b2b", status="active"))
        session.add(CustomerScore(customer_id="c-2", churn_risk=0.5, value_tier="iron"))
        session.add_all([CustomerFact(customer_id="c-1", team="north"), CustomerFact(customer_id="c-2", team="south")])
        await session.flush()
        await HANDLERS["consent.changed"](UnitOfWork(session), consent(channels={"phone": "opt_out"}))
        await HANDLERS["complaint.opened"](UnitOfWork(session), complaint())
        await HANDLERS["complaint.opened"](UnitOfWork(session), complaint("c-2"))
    period = f"from={NOW.date()}&to={NOW.date() + timedelta(days=1)}"

    async def counts(query: str) -> tuple[int, int]:
        body = (await client.get(f"/reports/retention/touches-blocked?{period}&{query}")).json()
        return body["allowed"], body["blocked"]

    assert await counts("owner=alice") == (0, 1)
    assert await counts("owner=bob") == (1, 0)
    assert await counts("tier=gold") == (0, 1)
    assert await counts("tier=iron") == (1, 0)  # from the score: no account-managed tier
    assert await counts("team=south&team=north") == (1, 1)
    assert await counts("segment=retail&owner=bob") == (0, 0)
    bad = await client.get(f"/reports/retention/touches-blocked?{period}&tier=diamond")
    assert bad.status_code == 422 and "query.tier[0]" in [e["field"] for e in bad.json()["errors"]]
