"""The sequence engine on SQLite: enrolment, exactly-once steps, persisted waits, the consent gate, routes."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from servicekit.db import Database
from services.retention.catalog.service import ActivePlaybook
from services.retention.models import metadata
from services.retention.sequences import engine as sequence_engine
from services.retention.sequences.core import SequenceDef
from services.retention.sequences.models import Enrolment
from services.retention.surveys.models import SurveyLink
from services.retention.tasks.models import Task
from services.retention.touches.models import ConsentReplica, Touch
from tests.unit.databases import sqlite_database

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

DEFINITION = SequenceDef.model_validate(
    {
        "steps": [
            {"id": "call", "kind": "task", "action": "call_owner"},
            {"id": "wait", "kind": "wait", "hours": 72},
            {"id": "replied", "kind": "branch", "when": {"replied": True}, "then": "stop"},
            {"id": "offer", "kind": "touch", "action": "loyalty_offer", "template": "offer-10"},
        ]
    }
)
PLAYBOOK = ActivePlaybook(reason="risk_high", control_share=0.0, steps=(), sequences={"default": DEFINITION})


async def count(db: Database, model: type, *where: object) -> int:
    async with db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def outbox_types(db: Database) -> list[str]:
    async with db.sessions() as session:
        payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
    return sorted(json.loads(p)["type"] for p in payloads)


async def enrol(db: Database, customer_id: str = "c1") -> None:
    async with db.transaction() as session:
        await sequence_engine.enrol(
            session, playbook=PLAYBOOK, customer_id=customer_id, alert_id="a1", tier="mid", owner="am1", now=NOW
        )


async def test_steps_run_once_and_the_wait_is_a_persisted_timer(tmp_path: Path) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await enrol(db)
        await enrol(db)  # a redelivered trigger enrols no one again
        assert await count(db, Enrolment) == 1
        first = await sequence_engine.run_due(db, batch_size=10, now=NOW)
        again = await sequence_engine.run_due(db, batch_size=10, now=NOW + timedelta(hours=1))
        assert (first.claimed, again.claimed) == (1, 0)
        assert await count(db, Task) == 1
        async with db.sessions() as session:
            row = (await session.execute(select(Enrolment))).scalar_one()
            assert row.cursor == 1 and row.due_at == NOW + timedelta(hours=72) and row.status == "active"
    # a new process (nothing in memory) resumes from the stored timer
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", source="/crm/retention")
    try:
        done = await sequence_engine.run_due(db, batch_size=10, now=NOW + timedelta(hours=72))
        assert done.claimed == 1
        async with db.sessions() as session:
            row = (await session.execute(select(Enrolment))).scalar_one()
            assert row.status == "completed" and row.due_at is None and row.active_slot is None
        assert await outbox_types(db) == ["task.created", "touch.requested"]
        assert await count(db, Touch, Touch.allowed.is_(True)) == 2  # the call and the offer
    finally:
        await db.dispose()


async def test_a_second_engine_that_read_the_due_row_first_takes_nothing(tmp_path: Path) -> None:
    """Engine B read the due row's id, then engine A ran the step and committed: B's conditional claim
    finds the row no longer due, and a timer delivered twice runs its step once."""
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        await enrol(db)
        async with db.sessions() as session:
            read_by_b = list((await session.execute(select(Enrolment.id).where(Enrolment.due_at <= NOW))).scalars())
        assert len(read_by_b) == 1
        async with db.transaction() as session:
            assert await sequence_engine.run_batch(session, now=NOW, limit=10) == 1
        async with db.transaction() as session:
            taken = await session.execute(
                update(Enrolment)
                .where(Enrolment.id.in_(read_by_b), Enrolment.status == "active", Enrolment.due_at <= NOW)
                .values(version=Enrolment.version + 1)
            )
            assert taken.rowcount == 0
            assert await sequence_engine.run_batch(session, now=NOW, limit=10) == 0
        assert await count(db, Task) == 1
        assert await outbox_types(db) == ["task.created"]


async def test_an_opted_out_customer_gets_no_touch_and_the_block_is_recorded(tmp_path: Path) -> None:
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        async with db.transaction() as session:
            session.add(ConsentReplica(customer_id="c1", version=1, channels={"phone": "opt_out", "email": "opt_out"}))
        await enrol(db)
        await sequence_engine.run_due(db, batch_size=10, now=NOW)
        await sequence_engine.run_due(db, batch_size=10, now=NOW + timedelta(hours=72))
        assert await count(db, Task) == 0
        assert await count(db, Touch, Touch.allowed.is_(False), Touch.verdict == "opted_out") == 2
        async with db.sessions() as session:
            row = (await session.execute(select(Enrolment))).scalar_one()
        assert row.status == "completed" and [t.get("result") for t in row.trail if "result" in t] == [
            "blocked",
            "blocked",
        ]
        assert await outbox_types(db) == []


async def test_a_survey_touch_asks_its_own_question_else_the_configured_one(tmp_path: Path) -> None:
    both = SequenceDef.model_validate(
        {
            "steps": [
                {"id": "csat", "kind": "touch", "action": "satisfaction_survey", "survey": "csat"},
                {"id": "configured", "kind": "touch", "action": "satisfaction_survey"},
            ]
        }
    )
    playbook = ActivePlaybook(reason="complaint", control_share=0.0, steps=(), sequences={"default": both})
    async with sqlite_database(tmp_path / "r.db", metadata, source="/crm/retention") as db:
        async with db.transaction() as session:
            await sequence_engine.enrol(
                session, playbook=playbook, customer_id="c1", alert_id=None, tier="gold", owner="am1", now=NOW
            )
        await sequence_engine.run_due(db, batch_size=10, now=NOW)
        async with db.sessions() as session:
            links = (await session.execute(select(SurveyLink).order_by(SurveyLink.created_at))).scalars().all()
            payloads = (await session.execute(select(metadata.tables["outbox"].c.payload))).scalars().all()
        assert sorted(link.survey for link in links) == ["csat", "nps"]  # nps: RETENTION_SURVEY_KIND's default
        requested = [json.loads(p)["data"] for p in payloads if json.loads(p)["type"] == "survey.requested"]
        assert sorted(r["survey"] for r in requested) == ["csat", "nps"]


async def test_routes(app_db: tuple[httpx.AsyncClient, Database]) -> None:
    client, db = app_db
    bad = await client.patch(
        "/playbooks/" + (await client.get("/playbooks")).json()["items"][0]["id"],
        json={"sequences": {"default": {"steps": [{"id": "x", "kind": "touch", "action": "service_recovery"}]}}},
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in bad.json()["errors"]] == ["sequences.default.steps[0].touch"]
    bad_tier = await client.patch(
        "/playbooks/" + (await client.get("/playbooks")).json()["items"][0]["id"],
        json={"sequences": {"diamond": DEFINITION.model_dump(mode="json", by_alias=True)}},
    )
    assert bad_tier.status_code == 422
    playbook = (await client.get("/playbooks")).json()["items"][0]
    ok = await client.patch(
        f"/playbooks/{playbook['id']}",
        json={"sequences": {"platinum": DEFINITION.model_dump(mode="json", by_alias=True)}},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["sequences"]["platinum"]["steps"][0]["id"] == "call"
    await enrol(db, "c9")
    page = (await client.get("/customers/c9/enrolments")).json()
    assert page["total"] == 1
    enrolment_id = page["items"][0]["id"]
    stopped = await client.post(f"/enrolments/{enrolment_id}/stop", json={"reason": "customer_asked"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert stopped.json()["stop_reason"] == "manual:customer_asked"
    assert (await client.post(f"/enrolments/{enrolment_id}/stop")).json()["stop_reason"] == "manual:customer_asked"
    assert (await client.post("/enrolments/nope/stop")).status_code == 404
    assert (await sequence_engine.run_due(db, batch_size=10, now=NOW + timedelta(days=30))).claimed == 0
