"""Follow-ups after an event: a resolved complaint and a win-back pend one follow-up per event for the tiers
that have one, the loop carries it out through the contact policy, and erasure removes it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from contracts.interaction import ComplaintUpdated
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.followups import service, triggers
from services.retention.followups.models import FollowupPending
from services.retention.handlers import HANDLERS
from services.retention.replica.models import Customer, CustomerScore
from services.retention.surveys.models import SurveyLink
from services.retention.tasks.models import Task
from services.retention.touches.models import ConsentReplica, Touch
from tests.unit.retention.events import T0, erased, received, status_changed


def resolved(customer_id: str, complaint_id: str, *, status: str = "resolved") -> object:
    data = ComplaintUpdated(
        customer_id=customer_id,
        complaint_id=complaint_id,
        previous_status="valid",
        status=status,
        severity="high",
        changed_at=T0,
    )
    return received(data, "/crm/interaction")


async def _customers(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Customer(customer_id="key", owner="am1", status="active", tier="platinum"))
        session.add(Customer(customer_id="scored", owner="am2", status="churned"))
        session.add(CustomerScore(customer_id="scored", churn_risk=0.4, value_tier="gold"))
        session.add(Customer(customer_id="small", owner="am3", status="active", tier="lead"))
        session.add(Customer(customer_id="no_visits", owner="am1", status="active", tier="platinum"))
        session.add(ConsentReplica(customer_id="no_visits", version=1, channels={"visit": "opt_out"}))


async def _handle(db: Database, event: object) -> None:
    async with db.transaction() as session:
        await HANDLERS[event.envelope.type](UnitOfWork(session), event)  # type: ignore[attr-defined]


async def _all(db: Database, model: type) -> list:
    async with db.sessions() as session:
        return list((await session.execute(select(model))).scalars())


async def test_trigger_routes_validate(app_db):
    client, _ = app_db
    ok = await client.put(
        "/followup-triggers/platinum/complaint_resolved", json={"action": "follow_up_visit", "delay_hours": 48}
    )
    assert ok.status_code == 200, ok.text
    assert (ok.json()["trigger"], ok.json()["delay_hours"], ok.json()["due_in_hours"]) == ("complaint_resolved", 48, 72)
    unknown_tier = await client.put("/followup-triggers/diamond/won_back", json={"action": "call_owner"})
    assert unknown_tier.status_code == 422 and unknown_tier.json()["errors"][0]["field"] == "tier"
    unknown_trigger = await client.put("/followup-triggers/gold/birthday", json={"action": "call_owner"})
    assert unknown_trigger.status_code == 422
    offer = await client.put("/followup-triggers/gold/won_back", json={"action": "win_back_offer"})
    assert offer.status_code == 422 and offer.json()["errors"][0]["field"] == "action"
    negative = await client.put("/followup-triggers/gold/won_back", json={"action": "call_owner", "delay_hours": -1})
    assert negative.status_code == 422
    listed = (await client.get("/followup-triggers")).json()["items"]
    assert [(t["tier"], t["trigger"]) for t in listed] == [("platinum", "complaint_resolved")]
    assert (await client.delete("/followup-triggers/platinum/complaint_resolved")).status_code == 204
    assert (await client.delete("/followup-triggers/platinum/complaint_resolved")).status_code == 404


async def test_a_resolved_complaint_pends_one_visit_per_complaint_for_the_tier(app_db):
    client, db = app_db
    await _customers(db)
    await client.put(
        "/followup-triggers/platinum/complaint_resolved",
        json={"action": "follow_up_visit", "delay_hours": 24, "due_in_hours": 48},
    )
    for event in (
        resolved("key", "k1"),
        resolved("key", "k1"),  # the same event redelivered
        resolved("key", "k2"),
        resolved("key", "k3", status="acknowledged"),  # not a resolution
        resolved("small", "k4"),  # lead has no follow-up after a complaint
        resolved("no_visits", "k5"),
    ):
        await _handle(db, event)
    pending = {p.key: p for p in await _all(db, FollowupPending)}
    assert set(pending) == {"complaint_resolved:k1", "complaint_resolved:k2", "complaint_resolved:k5"}
    assert {p.status for p in pending.values()} == {"pending"}

    now = utc_now()
    assert await triggers.run_due(db, batch_size=50, now=now) == 0  # not due for a day
    assert await triggers.run_due(db, batch_size=50, now=now + timedelta(hours=25)) == 3
    assert await triggers.run_due(db, batch_size=50, now=now + timedelta(days=30)) == 0  # each fires once
    tasks = await _all(db, Task)
    assert (
        sorted((t.customer_id, t.action, t.owner, t.reason) for t in tasks)
        == [("key", "follow_up_visit", "am1", "after_complaint_resolved")] * 2
    )
    blocked = [t for t in await _all(db, Touch) if not t.allowed]
    assert [(t.customer_id, t.verdict, t.reason) for t in blocked] == [
        ("no_visits", "opted_out", "after_complaint_resolved")
    ]
    results = {p.key: p.status for p in await _all(db, FollowupPending)}
    assert results == {
        "complaint_resolved:k1": "created",
        "complaint_resolved:k2": "created",
        "complaint_resolved:k5": "blocked",
    }


async def test_a_follow_up_survey_asks_the_question_it_names(app_db):
    client, db = app_db
    await _customers(db)
    call = await client.put("/followup-triggers/gold/won_back", json={"action": "call_owner", "survey": "csat"})
    assert call.status_code == 422 and "survey" in call.text  # only a survey asks a question
    unknown = await client.put(
        "/followup-triggers/gold/won_back", json={"action": "satisfaction_survey", "survey": "x"}
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "survey"
    ok = await client.put(
        "/followup-triggers/gold/won_back", json={"action": "satisfaction_survey", "delay_hours": 0, "survey": "csat"}
    )
    assert ok.status_code == 200 and ok.json()["survey"] == "csat"
    schedule = await client.put(
        "/followup-schedules/platinum", json={"every_days": 30, "action": "satisfaction_survey", "survey": "nps"}
    )
    assert schedule.status_code == 200 and schedule.json()["survey"] == "nps"
    await _handle(db, status_changed("scored", "won_back", previous="churned"))
    assert await triggers.run_due(db, batch_size=50, now=utc_now()) == 1
    [link] = await _all(db, SurveyLink)
    assert (link.customer_id, link.survey) == ("scored", "csat")


async def test_a_win_back_sends_a_survey_link_once_and_erasure_removes_a_pending_one(app_db):
    client, db = app_db
    await _customers(db)
    await client.put("/followup-triggers/gold/won_back", json={"action": "satisfaction_survey", "delay_hours": 0})
    back = status_changed("scored", "won_back", previous="churned")
    await _handle(db, back)
    await _handle(db, back)  # redelivered: still one
    await _handle(db, status_changed("scored", "churned", days=2, previous="won_back"))  # a churn is no win-back
    # an older win-back arriving after that churn is history, not the customer's status: it pends nothing
    await _handle(db, status_changed("scored", "won_back", days=1.5, previous="churned"))
    [pending] = await _all(db, FollowupPending)
    assert (pending.trigger, pending.tier, pending.action) == ("won_back", "gold", "satisfaction_survey")
    assert await triggers.run_due(db, batch_size=50, now=utc_now()) == 1
    [link] = await _all(db, SurveyLink)
    assert link.customer_id == "scored"
    assert [t for t in await _all(db, Task) if t.reason.startswith("after_")] == []  # a survey is a link

    # a second win-back later pends another; the customer is erased before it is due: it goes
    await _handle(db, status_changed("scored", "won_back", days=3, previous="churned"))
    assert len([p for p in await _all(db, FollowupPending) if p.status == "pending"]) == 1
    await _handle(db, erased("scored"))
    assert await _all(db, FollowupPending) == []
    # and an erased customer's later events pend nothing
    await _handle(db, status_changed("scored", "won_back", days=4, previous="churned"))
    assert await _all(db, FollowupPending) == []


async def test_an_erased_customer_s_due_follow_up_is_dropped_not_sent(database: Database):
    async with database.transaction() as session:
        session.add(Customer(customer_id="gone", owner="am1", status="active", tier="platinum", erased_at=T0))
        session.add(
            FollowupPending(
                key="won_back:e1",
                customer_id="gone",
                trigger="won_back",
                tier="platinum",
                action="call_owner",
                due_at=T0,
            )
        )
    assert await triggers.run_due(database, batch_size=10) == 1
    [pending] = await _all(database, FollowupPending)
    assert pending.status == "dropped" and await _all(database, Task) == []


async def test_a_customer_s_pending_follow_ups_are_listed_soonest_first(app_db):
    client, db = app_db
    await _customers(db)
    await client.put("/followup-schedules/platinum", json={"every_days": 30, "action": "follow_up_visit"})
    await client.put("/followup-triggers/platinum/complaint_resolved", json={"action": "call_owner", "delay_hours": 24})
    now = utc_now()
    assert await service.run_due(db, batch_size=50, now=now) == 2  # the first visits: "key" and "no_visits"
    await _handle(db, resolved("key", "k1"))

    listed = await client.get("/customers/key/followups")
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["total"] == 2
    after, scheduled = page["items"]  # soonest first: the call is a day away, the next visit a month
    assert (scheduled["kind"], scheduled["action"], scheduled["tier"]) == ("scheduled", "follow_up_visit", "platinum")
    assert (scheduled["every_days"], scheduled["last_result"], scheduled["trigger"]) == (30, "created", None)
    assert (after["kind"], after["action"], after["trigger"], after["key"]) == (
        "after_event",
        "call_owner",
        "complaint_resolved",
        "complaint_resolved:k1",
    )
    assert after["due_at"] < scheduled["due_at"]
    paged = await client.get("/customers/key/followups", params={"limit": 1, "offset": 1})
    assert paged.json()["items"] == [scheduled]
    assert (await client.get("/customers/small/followups")).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }

    # once fired, the event's follow-up is no longer pending; the schedule's next one still is
    assert await triggers.run_due(db, batch_size=50, now=now + timedelta(hours=25)) == 1
    assert [i["kind"] for i in (await client.get("/customers/key/followups")).json()["items"]] == ["scheduled"]
    await _handle(db, erased("key"))
    assert (await client.get("/customers/key/followups")).json()["total"] == 0
