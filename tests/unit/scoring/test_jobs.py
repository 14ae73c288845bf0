"""Background jobs against a temp-file SQLite database: value refit, churn training, stale jobs."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.scoring import background
from services.scoring.handlers import HANDLERS
from services.scoring.scores.models import CurrentScore, Purchase
from services.scoring.settings import ScoringSettings
from services.scoring.training import jobs as training_jobs
from services.scoring.training import service as training
from services.scoring.training.churn_model import FeatureSpec
from services.scoring.training.models import ChurnModelVersion, Job, ValueModelVersion
from tests.unit.scoring import events as ev
from tests.unit.scoring.cdnow import cdnow_rows


async def handle(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def run_queued(database: Database, settings: ScoringSettings) -> Job:
    job = await background.claim_next(database)
    assert job is not None
    await background.run_job(database, settings, job)
    async with database.sessions() as session:
        done = await session.get(Job, job.id)
    assert done is not None
    return done


async def queue(database: Database, kind: str, request: dict[str, Any]) -> str:
    async with database.transaction() as session:
        job = await training.enqueue_job(session=session, kind=kind, request=request)
    return job.id


async def test_value_refit_over_the_cdnow_purchases_reproduces_the_published_estimates_and_activates(database):
    rows = [
        {"interaction_id": f"cd-{i}", "customer_id": f"cd{c}", "day": day, "amount": amount}
        for i, (c, day, amount) in enumerate(cdnow_rows())
    ]
    async with database.transaction() as session:
        await session.execute(insert(Purchase), rows)
    await queue(database, training.VALUE_REFIT, {"calibration_end": "1997-09-30", "rescore": False})

    job = await run_queued(database, ScoringSettings())

    assert job.status == "succeeded" and job.progress == 1.0, job.message
    bgnbd, gg = job.result["bgnbd"], job.result["gamma_gamma"]
    for name, published in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert bgnbd[name] == pytest.approx(published, rel=0.01)
    for name, published in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert gg[name] == pytest.approx(published, rel=0.01)
    metrics = job.result["metrics"]
    assert (metrics["n_customers"], metrics["n_repeat_buyers"]) == (2357, 946)
    assert metrics["backtest"]["actual"] == 1882  # purchase days in the 39 weeks after calibration
    assert len(metrics["backtest"]["by_frequency"]) == 8
    async with database.sessions() as session:
        versions = (await session.execute(select(ValueModelVersion))).scalars().all()
    assert [(v.id, v.active) for v in versions] == [(job.result["model_id"], True)]


async def test_a_refit_rescores_every_customer_with_value_tier_and_clv(database):
    # 40 customers, 8 purchases of 10 each, every 41 - c days up to today: the more often, the more value.
    batch = []
    for c in range(40):
        batch += [ev.purchase(f"c{c:02d}", id=f"c{c}-{k}", days=-(41 - c) * k, amount=10) for k in range(8)]
    await handle(database, *batch)
    async with database.sessions() as session:
        assert (await session.execute(select(Purchase.interaction_id))).scalars().all().__len__() == len(batch)
    await queue(database, training.VALUE_REFIT, {"rescore": True})

    job = await run_queued(database, ScoringSettings())

    assert job.status == "succeeded", job.message
    assert job.result["rescored"] == 40
    async with database.sessions() as session:
        current = {c.customer_id: c for c in (await session.execute(select(CurrentScore))).scalars()}
    assert all(c.clv is not None and c.p_alive is not None and c.caused_by == f"job:{job.id}" for c in current.values())
    tiers = [current[f"c{c:02d}"].value_tier for c in range(40)]
    assert tiers[-1] == "platinum" and tiers[0] == "lead"
    assert current["c39"].clv > current["c00"].clv
    assert current["c39"].value_at_risk == pytest.approx(current["c39"].clv * current["c39"].churn_risk, abs=0.01)


async def test_a_running_job_without_heartbeat_is_marked_failed(database):
    job_id = await queue(database, training.VALUE_REFIT, {})
    claimed = await background.claim_next(database)
    assert claimed is not None and claimed.id == job_id
    assert await background.claim_next(database) is None  # claimed once only
    async with database.transaction() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        row.heartbeat_at = datetime.now(UTC) - timedelta(minutes=10)

    assert await background.fail_stale(database, ScoringSettings()) == 1

    async with database.sessions() as session:
        row = await session.get(Job, job_id)
    assert row is not None and row.status == "failed" and "no heartbeat" in (row.message or "")


async def test_a_refit_without_purchases_fails_with_a_message(database):
    await queue(database, training.VALUE_REFIT, {})
    job = await run_queued(database, ScoringSettings())
    assert (job.status, job.message) == ("failed", "no purchases to fit")


# ---- churn training -----------------------------------------------------------------------------------


def churn_population(n: int = 80, seed: int = 3) -> tuple[list[Any], list[Any]]:
    """Customers whose churn depends on their contract and complaints; half churn 60 days in.

    Returns (events up to the churn dates, events AFTER each churn date)."""
    rng = np.random.default_rng(seed)
    before, after = [], []
    for i in range(n):
        cid = f"k{i:03d}"
        monthly = bool(rng.random() < 0.5)
        complaints = int(rng.integers(0, 3)) + (2 if monthly else 0)
        churns = rng.random() < (0.8 if monthly else 0.2)
        created = ev.customer_created(cid, segment="smb" if i % 2 else "enterprise")
        contract = "month-to-month" if monthly else "annual"
        created.data.attributes = {"contract": contract, "seats": None if i % 5 == 0 else int(rng.integers(1, 50))}
        before.append(created)
        before += [ev.purchase(cid, id=f"{cid}-p{k}", days=k * 10, amount=50) for k in range(3)]
        before += [ev.complaint(cid, id=f"{cid}-k{k}", days=30 + k) for k in range(complaints)]
        if churns:
            before.append(status_changed(cid, "churned", days=60))
            # After churn: a flood of complaints and a survey that must not reach the training matrix.
            after += [ev.complaint(cid, id=f"{cid}-late{k}", days=61 + k, severity="critical") for k in range(4)]
            after.append(ev.survey(cid, id=f"{cid}-s", score=0, days=70))
    return before, after


def status_changed(customer_id: str, status: str, *, days: float) -> Any:
    from contracts.customer import CustomerStatusChanged

    data = CustomerStatusChanged(
        customer_id=customer_id, previous_status="active", status=status, changed_at=ev.T0 + timedelta(days=days)
    )
    return ev.received(data, "/crm/customer")


async def training_matrix(database: Database, cutoff: datetime) -> tuple[list[str], np.ndarray, list[int]]:
    async with database.sessions() as session:
        ids, snapshots, labels = await training_jobs.training_data(session=session, cutoff=cutoff)
    return ids, FeatureSpec.infer(snapshots).matrix(snapshots), labels


async def test_training_data_uses_only_features_from_before_each_churn_date(database):
    before, after = churn_population()
    await handle(database, *before)
    cutoff = ev.T0 + timedelta(days=60)
    ids, matrix, labels = await training_matrix(database, cutoff)
    assert sum(labels) > 10 and len(labels) - sum(labels) > 10

    await handle(database, *after)
    ids_after, matrix_after, labels_after = await training_matrix(database, cutoff)

    assert ids_after == ids and labels_after == labels
    assert matrix_after.shape == matrix.shape
    assert all(
        (a == b) or (a != a and b != b)  # NaN == NaN
        for a, b in zip(matrix_after.ravel(), matrix.ravel(), strict=True)
    )


async def test_customers_imported_already_churned_are_labelled_at_their_churn_date(database):
    from contracts.customer import CustomerCreated, CustomerStatusChanged

    churn_day = (ev.T0 + timedelta(days=40)).date()
    imported = CustomerCreated(
        customer_id="imp", kind="company", status="churned", created_at=ev.T0, churned_at=churn_day
    )
    # Reported at day 90, but the customer master says it churned on day 40.
    late = CustomerStatusChanged(
        customer_id="late",
        previous_status="active",
        status="churned",
        changed_at=ev.T0 + timedelta(days=90),
        churned_at=churn_day,
    )
    history = []
    for cid in ("imp", "late", "stays"):
        history += [ev.purchase(cid, id=f"{cid}-p{k}", days=10 * k) for k in range(3)]  # days 0, 10, 20
        history += [ev.complaint(cid, id=f"{cid}-k{k}", days=45 + k) for k in range(3)]  # after the churn day
    await handle(database, ev.received(imported, "/crm/customer"), ev.customer_created("late"), *history)
    await handle(database, ev.customer_created("stays"), ev.received(late, "/crm/customer"))

    async with database.sessions() as session:
        ids, snapshots, labels = await training_jobs.training_data(session=session, cutoff=ev.T0 + timedelta(days=90))

    assert dict(zip(ids, labels, strict=True)) == {"imp": 1, "late": 1, "stays": 0}
    by_id = dict(zip(ids, snapshots, strict=True))
    # The churned customers' snapshots are their last before the churn day: no complaint yet.
    assert [by_id[c]["complaints_30d"] for c in ("imp", "late")] == [0, 0]
    assert by_id["stays"]["complaints_30d"] == 3


async def test_a_trained_churn_model_is_activated_reports_metrics_and_explains_scores(database):
    before, after = churn_population(120)
    await handle(database, *before, *after)
    await queue(database, training.CHURN_TRAIN, {"cutoff": (ev.T0 + timedelta(days=60)).isoformat()})

    job = await run_queued(database, ScoringSettings())

    assert job.status == "succeeded", job.message
    metrics = job.result["metrics"]
    assert metrics["model"]["roc_auc"] > 0.7
    assert {"roc_auc", "brier", "calibration"} <= set(metrics["baseline_logistic"])
    assert sum(row["n"] for row in metrics["model"]["calibration"]) == metrics["n_samples"]
    assert "attr.contract" in metrics["features"]["categorical"]
    model_id = job.result["model_id"]
    async with database.sessions() as session:
        version = await session.get(ChurnModelVersion, model_id)
        assert version is not None and version.active

    # The next event is scored by the trained model, with its factors in plain words.
    newcomer = ev.customer_created("new-1")
    newcomer.data.attributes = {"contract": "month-to-month", "seats": 10}
    await handle(database, newcomer, ev.purchase("new-1", id="new-1-p", days=0), ev.complaint("new-1", id="n", days=1))
    async with database.sessions() as session:
        current = await session.get(CurrentScore, "new-1")
    assert current is not None and current.model_version == model_id
    factors = {f["label"]: f["contribution"] for f in current.factors["churn_risk"]}
    assert factors.get("contract: month-to-month", 0) > 0, factors


def attribute_population(n: int = 120, seed: int = 5) -> list[Any]:
    """A subscription book with no interactions: churn lives in the contract and the payment method."""
    from contracts.customer import CustomerCreated

    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for i in range(n):
        monthly = bool(rng.random() < 0.5)
        cheque = bool(rng.random() < 0.4)
        churns = rng.random() < 0.1 + 0.5 * monthly + 0.3 * cheque
        data = CustomerCreated(
            customer_id=f"s{i:03d}",
            kind="person",
            status="churned" if churns else "active",
            created_at=ev.T0,
            attributes={
                "contract": "month-to-month" if monthly else "two-year",
                "payment": "cheque" if cheque else "card",
                "tenure_months": int(rng.integers(1, 72)),
            },
            churned_at=(ev.T0 + timedelta(days=30)).date() if churns else None,
            churn_reason="price" if churns else None,
        )
        out.append(ev.received(data, "/crm/customer"))
    return out


async def test_customers_with_attributes_and_no_interactions_train_a_model_that_says_what_it_used(database):
    await handle(database, *attribute_population(), ev.customer_created("prospect-1", status="prospect"))
    await queue(database, training.CHURN_TRAIN, {"cutoff": (ev.T0 + timedelta(days=60)).isoformat()})

    job = await run_queued(database, ScoringSettings())

    assert job.status == "succeeded", job.message
    data = job.result["data"]
    assert data["used"]["churned"] + data["used"]["active"] == 120 == data["from_profile"]
    assert data["used"]["churned"] > 20 and data["used"]["active"] > 20
    assert data["left_out"] == {"status is not a label (prospect or won_back)": 1}
    metrics = job.result["metrics"]
    # Reported side by side on the same folds: the model and plain logistic regression on the same columns.
    assert metrics["model"]["roc_auc"] > 0.7 and metrics["baseline_logistic"]["roc_auc"] > 0.7
    assert {"attr.contract", "attr.payment"} <= set(metrics["features"]["categorical"])
    # Activating it rescored everyone, the customers without interactions included.
    assert job.result["rescored"] == 121
    async with database.sessions() as session:
        current = await session.get(CurrentScore, "s000")
    assert current is not None and current.model_version == job.result["model_id"]


async def test_a_training_job_without_enough_labels_says_who_was_left_out(database):
    await handle(database, ev.customer_created("a"), ev.customer_created("p", status="prospect"))
    await queue(database, training.CHURN_TRAIN, {})
    job = await run_queued(database, ScoringSettings())
    assert job.status == "failed"
    assert "need at least 4 churned" in job.message and "status is not a label" in job.message


async def test_replaying_the_same_history_in_another_order_gives_the_same_scores(tmp_path):
    from services.scoring.main import metadata
    from tests.unit.databases import sqlite_database

    before, after = churn_population(30, seed=11)
    events = [*before, *after]
    rng = np.random.default_rng(1)
    shuffled = [events[i] for i in rng.permutation(len(events))]
    current: list[dict[str, Any]] = []
    for name, order in (("in-order", events), ("shuffled", shuffled)):
        async with sqlite_database(tmp_path / f"{name}.db", metadata, source="/crm/scoring") as db:
            await handle(db, *order)
            async with db.sessions() as session:
                rows = (await session.execute(select(CurrentScore).order_by(CurrentScore.customer_id))).scalars()
                current.append({r.customer_id: (r.churn_risk, r.health, r.lifecycle_stage, r.as_of) for r in rows})
    assert current[0] == current[1] and len(current[0]) == 30
