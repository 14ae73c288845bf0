"""Model and job routes, and the ranked list's value filters, over a temp-file SQLite database."""

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.service import API, create_app
from services.scoring.main import SPEC, metadata
from services.scoring.scores.models import CurrentScore
from services.scoring.scores.rules import RULES_VERSION
from services.scoring.settings import ScoringSettings
from services.scoring.training import service as training
from services.scoring.training.models import Job, ValueModelVersion
from services.scoring.value.valuation import ValueModel
from services.scoring.value.value_model import BgNbdParams, ClvSettings, GammaGammaParams
from tests.unit.scoring import events as ev
from tests.unit.scoring.test_jobs import churn_population, handle, queue, run_queued


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


def value_version(model_id: str, *, active: bool, thresholds: tuple[float, float, float]) -> ValueModelVersion:
    bgnbd, gg = BgNbdParams(0.243, 4.414, 0.793, 2.426), GammaGammaParams(6.25, 3.74, 15.44)
    model = ValueModel(model_id, bgnbd, gg, ClvSettings(), thresholds)
    return ValueModelVersion(
        id=model_id, params=model.params_json(), n_customers=10, calibration_end=date(2026, 1, 1), active=active
    )


async def test_refit_request_queues_a_job_that_can_be_polled(app_db):
    client, _ = app_db
    response = await client.post("/models/value/refit", json={"calibration_end": "1997-09-30"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["progress"]) == ("value_refit", "queued", 0.0)
    assert job["request"]["calibration_end"] == "1997-09-30"
    polled = await client.get(f"/jobs/{job['id']}")
    assert polled.status_code == 200 and polled.json()["id"] == job["id"]


async def test_bad_requests_name_the_field(app_db):
    client, _ = app_db
    bad_date = await client.post("/models/value/refit", json={"calibration_end": "not a date"})
    assert bad_date.status_code == 422 and "calibration_end" in bad_date.text
    bad_algorithm = await client.post("/models/churn/train", json={"algorithm": "magic"})
    assert bad_algorithm.status_code == 422 and "algorithm" in bad_algorithm.text
    for audience, field in (
        ({"segment": ""}, "segment"),
        ({"segment": "s" * 101}, "segment"),
        ({"attributes": {"plan": ["a", "b"]}}, "plan"),
        ({"attributes": {"plan": {"nested": 1}}}, "plan"),
        ({"attributes": {"": "x"}}, "attributes"),
        ({"attributes": {f"a{i}": i for i in range(11)}}, "attributes"),
        ({"attributes": "plan=basic"}, "attributes"),
    ):
        bad = await client.post("/models/churn/train", json=audience)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json"), bad.text
        assert field in bad.text, (audience, bad.text)
    assert (await client.get("/jobs/nope")).status_code == 404
    assert (await client.post("/models/value-nope/activate")).status_code == 404
    bad_tier = await client.get("/scores", params={"tier": "diamond"})
    assert bad_tier.status_code == 422 and "tier" in bad_tier.text


async def test_a_churn_training_request_carries_its_audience_and_leaves_the_algorithm_to_the_job(app_db):
    client, _ = app_db
    response = await client.post(
        "/models/churn/train", json={"segment": "subscription", "attributes": {"source": "erp-2026", "seats": 3}}
    )
    assert response.status_code == 202, response.text
    request = response.json()["request"]
    assert (request["segment"], request["attributes"], request["algorithm"]) == (
        "subscription",
        {"source": "erp-2026", "seats": 3},
        None,
    )


async def test_activating_an_older_version_rolls_back_and_queues_a_rescore(app_db):
    client, database = app_db
    async with database.transaction() as session:
        session.add(value_version("value-1", active=False, thresholds=(100, 50, 10)))
        session.add(value_version("value-2", active=True, thresholds=(1, 0.5, 0.1)))
    listed = (await client.get("/models")).json()
    assert listed["total"] == 2
    assert {m["id"]: m["active"] for m in listed["items"]} == {"value-1": False, "value-2": True}

    response = await client.post("/models/value-1/activate")

    assert response.status_code == 200 and response.json()["active"] is True
    async with database.sessions() as session:
        active = (await session.execute(select(ValueModelVersion.id).where(ValueModelVersion.active))).scalars().all()
        queued = (await session.execute(select(Job.kind, Job.request))).all()
    assert active == ["value-1"]
    assert queued == [(training.RESCORE, {"model_id": "value-1"})]


async def test_customer_scores_carry_value_and_stage_and_the_ranked_list_filters_and_sorts_by_value_at_risk(app_db):
    client, database = app_db
    async with database.transaction() as session:
        session.add(value_version("value-1", active=True, thresholds=(200.0, 100.0, 20.0)))
    frequent = [ev.purchase("big", id=f"b{k}", days=-7 * k, amount=100) for k in range(20)]
    rare = [ev.purchase("small", id=f"s{k}", days=-60 * k, amount=10) for k in range(3)]
    await handle(database, *frequent, *rare, ev.complaint("small", id="k1"))

    body = (await client.get("/customers/big/scores")).json()["scores"]
    assert body["value_model_version"] == "value-1"
    assert body["value_tier"] == "platinum" and body["clv"] > 200 and 0 < body["p_alive"] <= 1
    assert body["lifecycle_stage"] in {"formation", "stability"}
    assert body["value_at_risk"] == pytest.approx(body["clv"] * body["churn_risk"], abs=0.01)

    by_value = (await client.get("/scores", params={"sort": "value_at_risk"})).json()
    assert [i["customer_id"] for i in by_value["items"]] == ["big", "small"]
    by_risk = (await client.get("/scores", params={"sort": "risk"})).json()
    assert [i["customer_id"] for i in by_risk["items"]] == ["small", "big"]
    platinum = (await client.get("/scores", params={"tier": "platinum"})).json()
    assert [i["customer_id"] for i in platinum["items"]] == ["big"] and platinum["total"] == 1
    stage = body["lifecycle_stage"]
    assert "big" in [i["customer_id"] for i in (await client.get("/scores", params={"stage": stage})).json()["items"]]


async def test_requests_beyond_the_queue_limit_are_a_429_problem(app_db) -> None:
    client, _ = app_db
    answers = [await client.post("/models/churn/train", json={}) for _ in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 429]  # job_queue_limit defaults to 2
    problem = answers[2].json()
    assert answers[2].headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "urn:crm:problem:job_queue_full"
    assert (problem["queued"], problem["limit"]) == (2, 2)
    assert answers[2].headers["retry-after"] == "60"
    # Another kind has its own queue.
    assert (await client.post("/models/value/refit", json={})).status_code == 202


async def test_deactivating_the_churn_model_rescores_everyone_by_the_rules(app_db) -> None:
    client, database = app_db
    before, after = churn_population(120)
    await handle(database, *before, *after)
    await queue(database, training.CHURN_TRAIN, {"cutoff": (ev.T0 + timedelta(days=60)).isoformat()})
    trained = await run_queued(database, ScoringSettings())
    model_id = trained.result["model_id"]
    async with database.sessions() as session:
        versions = set((await session.execute(select(CurrentScore.model_version))).scalars())
    assert versions == {model_id}  # the activation's rescoring: every customer by the trained model

    response = await client.post("/models/churn/deactivate")

    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["request"]) == (training.RESCORE, "queued", {"deactivated": model_id})
    listed = (await client.get("/models", params={"kind": "churn"})).json()["items"]
    assert [(m["id"], m["active"]) for m in listed] == [(model_id, False)]  # kept in the history, not in use
    assert (await run_queued(database, ScoringSettings())).status == "succeeded"
    async with database.sessions() as session:
        versions = set((await session.execute(select(CurrentScore.model_version))).scalars())
    assert versions == {RULES_VERSION}
    # A new event is scored by the rules too (no cached model left behind).
    await handle(database, ev.complaint(before[0].data.customer_id, id="after-deactivation", days=1))
    async with database.sessions() as session:
        assert set((await session.execute(select(CurrentScore.model_version))).scalars()) == {RULES_VERSION}


async def test_deactivating_when_no_churn_model_is_active_is_a_409_and_queues_nothing(app_db) -> None:
    client, database = app_db

    response = await client.post("/models/churn/deactivate")

    assert response.status_code == 409 and response.headers["content-type"].startswith("application/problem+json")
    async with database.sessions() as session:
        assert (await session.execute(select(Job.id))).first() is None
