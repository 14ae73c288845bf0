"""Scheduled follow-ups per tier: the schedule routes, the timer per customer, tasks and survey links through
the contact policy, and customers leaving the schedule."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from servicekit.clock import utc_now
from servicekit.db import Database
from services.retention.followups import service as followups
from services.retention.followups.models import FollowupDue
from services.retention.models import metadata
from services.retention.replica.models import Customer, CustomerScore
from services.retention.surveys.models import SurveyLink
from services.retention.tasks.models import Task
from services.retention.touches.models import ConsentReplica, Touch


async def _customers(db: Database) -> None:
    async with db.transaction() as session:
        session.add(Customer(customer_id="key", owner="am1", status="active", tier="platinum"))
        session.add(Customer(customer_id="scored", owner="am2", status="active"))
        session.add(CustomerScore(customer_id="scored", churn_risk=0.1, value_tier="platinum"))
        session.add(Customer(customer_id="churned", owner="am1", status="churned", tier="platinum"))
        session.add(Customer(customer_id="small", owner="am3", status="active", tier="lead"))
        session.add(Customer(customer_id="no_visits", owner="am1", status="active", tier="platinum"))
        session.add(ConsentReplica(customer_id="no_visits", version=1, channels={"visit": "opt_out"}))


async def _all(db: Database, model: type) -> list:
    async with db.sessions() as session:
        return list((await session.execute(select(model))).scalars())


async def test_schedule_routes_validate(app_db):
    client, _ = app_db
    ok = await client.put("/followup-schedules/platinum", json={"every_days": 30, "action": "follow_up_visit"})
    assert ok.status_code == 200 and ok.json()["action"] == "follow_up_visit"
    assert (await client.put("/followup-schedules/diamond", json={"every_days": 30, "action": "call_owner"})).json()[
        "errors"
    ][0]["field"] == "tier"
    offer = await client.put("/followup-schedules/gold", json={"every_days": 30, "action": "win_back_offer"})
    assert offer.status_code == 422 and offer.json()["errors"][0]["field"] == "action"
    assert (
        await client.put("/followup-schedules/gold", json={"every_days": 0, "action": "call_owner"})
    ).status_code == 422
    assert [s["tier"] for s in (await client.get("/followup-schedules")).json()["items"]] == ["platinum"]
    assert (await client.delete("/followup-schedules/platinum")).status_code == 204
    assert (await client.delete("/followup-schedules/platinum")).status_code == 404


async def test_key_customers_get_a_visit_every_period_and_a_blocked_one_is_recorded(app_db):
    client, db = app_db
    await _customers(db)
    await client.put("/followup-schedules/platinum", json={"every_days": 30, "action": "follow_up_visit"})
    now = utc_now()
    assert await followups.run_due(db, batch_size=50, now=now) == 3  # key, scored, no_visits
    tasks = {t.customer_id: t for t in await _all(db, Task)}
    assert set(tasks) == {"key", "scored"}
    assert (tasks["key"].action, tasks["key"].owner, tasks["key"].reason) == (
        "follow_up_visit",
        "am1",
        "scheduled_followup",
    )
    blocked = [t for t in await _all(db, Touch) if not t.allowed]
    assert [(t.customer_id, t.verdict, t.channel) for t in blocked] == [("no_visits", "opted_out", "visit")]
    timers = {t.customer_id: t for t in await _all(db, FollowupDue)}
    assert {c: t.last_result for c, t in timers.items()} == {
        "key": "created",
        "scored": "created",
        "no_visits": "blocked",
    }
    # nothing more until the period has passed; then one more each
    assert await followups.run_due(db, batch_size=50, now=now + timedelta(days=29)) == 0
    assert await followups.run_due(db, batch_size=50, now=now + timedelta(days=30)) == 3
    assert len(await _all(db, Task)) == 4
    async with db.sessions() as session:
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    assert sorted(json.loads(p)["type"] for p in payloads) == ["task.created"] * 4


async def test_a_customer_leaving_the_tier_leaves_the_schedule_and_surveys_go_as_links(app_db):
    client, db = app_db
    await _customers(db)
    await client.put("/followup-schedules/platinum", json={"every_days": 7, "action": "satisfaction_survey"})
    now = utc_now()
    await followups.run_due(db, batch_size=50, now=now)
    links = await _all(db, SurveyLink)
    assert sorted(link.customer_id for link in links) == ["key", "no_visits", "scored"]  # e-mail is not opted out
    assert await _all(db, Task) == []
    async with db.transaction() as session:
        (await session.get(Customer, "key")).tier = "gold"
    await followups.run_due(db, batch_size=50, now=now + timedelta(days=7))
    assert "key" not in {t.customer_id for t in await _all(db, FollowupDue)}
    assert len(await _all(db, SurveyLink)) == 5


async def test_without_schedules_nothing_runs(database: Database):
    assert await followups.run_due(database, batch_size=10) == 0
