"""Surveys sent as touches: an allowed survey step makes a one-time signed link, answered once, publicly."""

from datetime import timedelta

import httpx
import orjson
from sqlalchemy import select, update

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.retention.handlers import HANDLERS
from services.retention.surveys.models import SurveyLink
from services.retention.tasks.models import Task
from tests.unit.retention.events import erased, survey
from tests.unit.retention.test_touches import consent


async def _apply(database: Database, *events) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def _outbox(database: Database, event_type: str) -> list[dict]:
    async with database.sessions() as session:
        rows = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
    return [e for p in rows if (e := orjson.loads(p))["type"] == event_type]


async def _links(database: Database) -> list[SurveyLink]:
    async with database.sessions() as session:
        return list((await session.execute(select(SurveyLink))).scalars())


async def test_an_allowed_survey_touch_sends_a_link_answered_once(app_db: tuple[httpx.AsyncClient, Database]):
    client, database = app_db
    await _apply(database, survey(value=2))  # a detractor: call_owner, then satisfaction_survey
    [link] = await _links(database)
    async with database.sessions() as session:
        task = await session.get(Task, link.task_id)
    assert task is not None and task.action == "satisfaction_survey"
    [requested] = await _outbox(database, "survey.requested")
    data = requested["data"]
    assert (data["link_id"], data["customer_id"], data["channel"], data["survey"]) == (link.id, "c-1", "email", "nps")
    url = f"/surveys/respond/{data['token']}"

    question = (await client.get(url)).json()
    assert question["survey"] == "nps" and (question["min"], question["max"]) == (0, 10)
    assert question["dimensions"] == ["product", "service_support", "relationship"]
    assert "c-1" not in str(question)

    bad = await client.post(url, json={"score": 11, "dimensions": {"price": 3}})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"score", "dimensions.price"}
    answered = await client.post(url, json={"score": 9, "dimensions": {"product": 8, "relationship": 10}})
    assert answered.status_code == 202, answered.text
    again = await client.post(url, json={"score": 0})
    assert again.status_code == 409
    assert (await client.get(url)).status_code == 409
    [responded] = await _outbox(database, "survey.responded")
    assert responded["data"]["score"] == 9 and responded["data"]["dimensions"] == {"product": 8, "relationship": 10}
    assert responded["subject"] == "c-1"


async def test_forged_and_expired_links_are_refused(app_db: tuple[httpx.AsyncClient, Database]):
    client, database = app_db
    await _apply(database, survey(value=2))
    [requested] = await _outbox(database, "survey.requested")
    token = requested["data"]["token"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = await client.post(f"/surveys/respond/{forged}", json={"score": 5})
    assert response.status_code == 404 and "c-1" not in response.text
    assert (await client.post("/surveys/respond/not-a-token", json={"score": 5})).status_code == 404

    # a link whose expiry passed: its token carries the old expiry, signed, so it is refused as expired
    [link] = await _links(database)
    async with database.transaction() as session:
        await session.execute(update(SurveyLink).values(expires_at=link.expires_at - timedelta(days=30)))
    from services.retention.settings import get_settings
    from services.retention.surveys import survey_links

    old = survey_links.issue(get_settings().survey_link_secret, link.id, int(link.expires_at.timestamp()) - 30 * 86400)
    assert (await client.post(f"/surveys/respond/{old}", json={"score": 5})).status_code == 410
    assert (await client.get(f"/surveys/respond/{old}")).status_code == 410
    assert await _outbox(database, "survey.responded") == []


async def test_no_link_when_email_is_opted_out_and_erasure_removes_unanswered_links(
    app_db: tuple[httpx.AsyncClient, Database],
):
    client, database = app_db
    await _apply(database, consent("c-2", channels={"email": "opt_out"}), survey("c-2", value=2))
    assert await _links(database) == []
    await _apply(database, survey("c-3", value=1))
    [requested] = await _outbox(database, "survey.requested")
    await _apply(database, erased("c-3"))
    assert await _links(database) == []
    assert (await client.post(f"/surveys/respond/{requested['data']['token']}", json={"score": 5})).status_code == 404
