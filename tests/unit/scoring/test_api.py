"""HTTP routes over a temp-file SQLite database filled through the handlers."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.db import Database
from servicekit.service import API, create_app
from servicekit.unit_of_work import UnitOfWork
from services.scoring.handlers import HANDLERS
from services.scoring.main import SPEC, metadata
from services.scoring.settings import ScoringSettings
from tests.unit.scoring import events as ev


@pytest.fixture
async def app_db(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    settings = ScoringSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    app = create_app(SPEC, settings, roles=(API,))
    database: Database = app.state.database
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
        yield client, database
    await database.dispose()


async def handle(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def test_customer_scores_show_current_values_factors_and_features(app_db):
    client, database = app_db
    complaint = ev.complaint(id="k1", days=0, severity="high")
    await handle(database, ev.customer_created(segment="smb"), ev.purchase(id="p1", days=-10, amount=80), complaint)
    response = await client.get("/customers/c-1/scores")
    assert response.status_code == 200
    body = response.json()
    scores = body["scores"]
    assert scores["caused_by"] == complaint.id
    assert scores["model_version"] == "rules-v1"
    assert 0 < scores["churn_risk"] < 0.6 and 0 <= scores["health"] <= 100
    assert scores["factors"]["churn_risk"][0]["label"] == "1 complaint in the last 30 days"
    assert scores["factors"]["health"][0]["code"] == "staying"
    assert scores["as_of"].startswith("2026-11-01T09:00:00") and scores["as_of"].endswith("Z")
    features = body["features"]
    assert (features["segment"], features["purchases"], features["total_spend"]) == ("smb", 1, 80.0)
    assert (features["complaints_30d"], features["open_complaints"], features["days_since_last_purchase"]) == (
        1,
        1,
        10.0,
    )


async def test_a_customer_known_only_from_customer_created_is_scored_from_its_profile(app_db):
    client, database = app_db
    await handle(database, ev.customer_created())
    body = (await client.get("/customers/c-1/scores")).json()
    scores = body["scores"]
    assert scores is not None and scores["model_version"] == "rules-v1"
    assert 0 < scores["churn_risk"] < 0.5 and scores["health"] > 50
    assert scores["lifecycle_stage"] is not None  # value tier: once a value model is fitted, as for everyone
    assert body["features"]["status"] == "active"


async def test_an_unknown_or_erased_customer_is_a_404_problem_naming_the_id(app_db):
    client, database = app_db
    await handle(database, ev.complaint(customer_id="gone", id="k1"), ev.customer_erased("gone"))
    for customer_id in ("nobody", "gone"):
        for path in (f"/customers/{customer_id}/scores", f"/customers/{customer_id}/scores/history"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["customer_id"] == customer_id
            assert customer_id in response.json()["detail"]


async def test_history_is_newest_first_and_paginated(app_db):
    client, database = app_db
    events = [ev.complaint(id=f"k{i}", days=i) for i in range(5)]
    await handle(database, *events)
    page = (await client.get("/customers/c-1/scores/history", params={"limit": 2})).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    assert [item["caused_by"] for item in page["items"]] == [events[4].id, events[3].id]
    last = (await client.get("/customers/c-1/scores/history", params={"limit": 2, "offset": 4})).json()
    assert [item["caused_by"] for item in last["items"]] == [events[0].id]


async def test_history_page_size_is_bounded(app_db):
    client, database = app_db
    await handle(database, ev.complaint(id="k1"))
    response = await client.get("/customers/c-1/scores/history", params={"limit": 1000})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.limit"


async def test_scores_are_ranked_by_churn_risk_and_filtered_by_min_risk_and_segment(app_db):
    client, database = app_db
    await handle(
        database,
        ev.customer_created("calm", segment="smb"),
        ev.purchase("calm", id="p1", days=0),
        ev.customer_created("angry", segment="smb"),
        *[ev.complaint("angry", id=f"k{i}", days=i) for i in range(3)],
        ev.customer_created("other", segment="enterprise"),
        ev.complaint("other", id="k9", severity="critical"),
    )
    ranked = (await client.get("/scores")).json()
    assert [i["customer_id"] for i in ranked["items"]] == ["angry", "other", "calm"]
    risks = [i["churn_risk"] for i in ranked["items"]]
    assert risks == sorted(risks, reverse=True)
    assert ranked["items"][0]["top_factors"][0]["label"] == "3 complaints in the last 30 days"
    smb = (await client.get("/scores", params={"segment": "smb"})).json()
    assert [i["customer_id"] for i in smb["items"]] == ["angry", "calm"]
    risky = (await client.get("/scores", params={"min_risk": 0.15})).json()
    assert [i["customer_id"] for i in risky["items"]] == ["angry", "other"]
    assert risky["total"] == 2
    second = (await client.get("/scores", params={"limit": 1, "offset": 1})).json()
    assert ([i["customer_id"] for i in second["items"]], second["total"]) == (["other"], 3)


async def test_min_risk_outside_0_to_1_is_rejected(app_db):
    client, _ = app_db
    response = await client.get("/scores", params={"min_risk": 2})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.min_risk"
