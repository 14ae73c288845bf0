from typing import Any

import orjson
import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.retention.handlers import HANDLERS
from tests.unit.retention.events import complaint, score


async def raise_alerts(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def outbox_types(database: Database) -> list[str]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars()
        return [t for p in payloads if (t := orjson.loads(p)["type"]).startswith("alert.")]


async def test_alerts_are_listed_by_value_at_risk_then_most_recent_with_unknown_value_last(app_db):
    client, database = app_db
    await raise_alerts(
        database,
        score("small", churn_risk=0.7, clv=100.0),  # value at risk 70
        score("big", churn_risk=0.7, clv=10_000.0),  # 7000
        complaint("unknown-old", minutes=1),  # no score known: value unknown
        complaint("unknown-new", minutes=2),
    )
    response = await client.get("/alerts")
    assert response.status_code == 200
    body = response.json()
    assert [a["customer_id"] for a in body["items"]] == ["big", "small", "unknown-new", "unknown-old"]
    assert (body["total"], body["limit"], body["offset"]) == (4, 50, 0)
    assert body["items"][0]["last_triggered_at"].endswith("Z")  # UTC, even from SQLite


async def test_alerts_are_filtered_and_paged(app_db):
    client, database = app_db
    await raise_alerts(
        database,
        score("c-1", churn_risk=0.9),
        complaint("c-1", severity="high"),
        complaint("c-2", severity="critical"),
    )
    body = (await client.get("/alerts", params={"customer_id": "c-1"})).json()
    assert sorted(a["reason"] for a in body["items"]) == ["high_churn_risk", "severe_complaint"]
    body = (await client.get("/alerts", params={"severity": ["critical", "high"], "reason": "severe_complaint"})).json()
    assert sorted(a["customer_id"] for a in body["items"]) == ["c-1", "c-2"]

    page = (await client.get("/alerts", params={"limit": 2, "offset": 2})).json()
    assert (len(page["items"]), page["total"], page["limit"], page["offset"]) == (1, 3, 2, 2)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 201}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"status": "closed"}, "query.status[0]"),
        ({"severity": "urgent"}, "query.severity[0]"),
    ],
)
async def test_a_bad_list_parameter_is_a_problem_naming_it(app_db, params, field):
    client, _ = app_db
    response = await client.get("/alerts", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {e["field"] for e in response.json()["errors"]}


async def test_an_unknown_alert_is_a_404_problem_naming_its_id(app_db):
    client, _ = app_db
    for response in (
        await client.get("/alerts/nope"),
        await client.post("/alerts/nope/acknowledge"),
        await client.post("/alerts/nope/resolve", json={"outcome": "saved"}),
    ):
        assert response.status_code == 404
        problem = response.json()
        assert "nope" in problem["detail"]
        assert problem["errors"] == [{"field": "id", "message": "unknown alert"}]


async def test_acknowledge_then_resolve_publishes_updated_then_resolved(app_db):
    client, database = app_db
    await raise_alerts(database, complaint("c-1"))
    [alert] = (await client.get("/alerts")).json()["items"]

    acked = await client.post(f"/alerts/{alert['id']}/acknowledge", json={"owner": "anna"})
    assert acked.status_code == 200
    assert (acked.json()["status"], acked.json()["owner"]) == ("acknowledged", "anna")
    assert acked.json()["acknowledged_at"] is not None
    again = await client.post(f"/alerts/{alert['id']}/acknowledge")  # a retried request changes nothing
    assert again.status_code == 200

    resolved = await client.post(f"/alerts/{alert['id']}/resolve", json={"outcome": "saved", "note": "called her"})
    assert resolved.status_code == 200
    body = resolved.json()
    assert (body["status"], body["outcome"], body["outcome_note"]) == ("resolved", "saved", "called her")
    assert body["resolved_at"] is not None
    assert await outbox_types(database) == ["alert.raised", "alert.updated", "alert.resolved"]
    assert (await client.get(f"/alerts/{alert['id']}")).json()["status"] == "resolved"


async def test_a_resolved_alert_cannot_be_acknowledged_or_resolved_again(app_db):
    client, database = app_db
    await raise_alerts(database, complaint("c-1"))
    [alert] = (await client.get("/alerts")).json()["items"]
    await client.post(f"/alerts/{alert['id']}/resolve", json={"outcome": "false_alarm"})

    for response in (
        await client.post(f"/alerts/{alert['id']}/acknowledge"),
        await client.post(f"/alerts/{alert['id']}/resolve", json={"outcome": "churned"}),
    ):
        assert response.status_code == 409
        problem = response.json()
        assert problem["type"] == "urn:crm:problem:invalid_transition"
        assert problem["current_status"] == "resolved"
    assert await outbox_types(database) == ["alert.raised", "alert.resolved"]


async def test_resolve_needs_a_known_outcome(app_db):
    client, database = app_db
    await raise_alerts(database, complaint("c-1"))
    [alert] = (await client.get("/alerts")).json()["items"]
    for body in ({}, {"outcome": "won"}):
        response = await client.post(f"/alerts/{alert['id']}/resolve", json=body)
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["outcome"]
