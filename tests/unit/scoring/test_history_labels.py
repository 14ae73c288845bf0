"""Churn labels from a company's history: imported already churned or changed live, on the generator's book."""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli.generate import AS_OF, Customer, subscriptions
from contracts.customer import CustomerCreated, CustomerStatusChanged
from contracts.interaction import InteractionRecorded, SurveyAnswered
from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.scoring import background
from services.scoring.handlers import HANDLERS
from services.scoring.main import metadata
from services.scoring.settings import ScoringSettings
from services.scoring.training import service as training
from services.scoring.training.churn_model import train
from services.scoring.training.models import Job
from tests.unit.databases import sqlite_database
from tests.unit.scoring import events as ev

CUTOFF = datetime.combine(AS_OF, time(), tzinfo=UTC)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _history(customer: Customer, rows: list[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for row in rows:
        at = _at(row["occurred_at"])
        if row["type"] == "survey":
            data: Any = SurveyAnswered(
                customer_id=customer.ref, interaction_id=row["external_id"], survey="nps", score=row["score"],
                answered_at=at,
            )  # fmt: skip
        else:
            amount = row.get("amount")
            data = InteractionRecorded(
                customer_id=customer.ref, interaction_id=row["external_id"], type=row["type"], occurred_at=at,
                amount=None if amount is None else Decimal(amount), severity=row.get("severity"),
            )  # fmt: skip
        out.append(ev.received(data))
    return out


def _created(customer: Customer, *, imported_churned: bool, segment: str | None = None) -> Any:
    churned = imported_churned and customer.churned_at is not None
    data = CustomerCreated(
        customer_id=customer.ref,
        kind="person",
        segment=segment,
        status="churned" if churned else "active",
        created_at=CUTOFF - timedelta(days=30 * customer.attributes["tenure_months"] + 10),
        attributes=customer.attributes,
        churned_at=customer.churned_at if churned else None,
        churn_reason=customer.reason if churned else None,
    )
    return ev.received(data, "/crm/customer")


def _status_change(customer: Customer, churned_at: date) -> Any:
    data = CustomerStatusChanged(
        customer_id=customer.ref,
        previous_status="active",
        status="churned",
        reason=customer.reason,
        changed_at=datetime.combine(churned_at, time(12), tzinfo=UTC),
        churned_at=churned_at,
        version=2,
    )
    return ev.received(data, "/crm/customer")


def book(n: int, *, imported_churned: bool, segment: str | None = None) -> list[Any]:
    """The same generated customers and history; churn either carried on the import or changed live after it.
    Under a segment, the customers' ids carry it too (two books can share a store)."""
    events: list[Any] = []
    for generated, rows in subscriptions(n, seed=7):
        customer = generated if segment is None else replace(generated, ref=f"{segment}-{generated.ref}")
        events.append(_created(customer, imported_churned=imported_churned, segment=segment))
        events.extend(_history(customer, [{**row, "customer_ref": customer.ref} for row in rows]))
        if not imported_churned and customer.churned_at is not None:
            events.append(_status_change(customer, customer.churned_at))
    return events


async def _train(path: Path, events: list[Any]) -> Job:
    async with sqlite_database(path, metadata, source="/crm/scoring") as database:
        await _handle(database, events)
        return await _run_training(database, {})


async def _run_training(database: Database, request: dict[str, Any]) -> Job:
    async with database.transaction() as session:
        request = {"cutoff": CUTOFF.isoformat(), "activate": False, **request}
        await training.enqueue_job(session=session, kind=training.CHURN_TRAIN, request=request)
    job = await background.claim_next(database)
    assert job is not None
    await background.run_job(database, ScoringSettings(), job)
    async with database.sessions() as session:
        done = await session.get(Job, job.id)
    assert done is not None and done.status == "succeeded", done and done.message
    return done


async def _handle(database: Database, events: list[Any]) -> None:
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def test_customers_imported_as_churned_train_the_same_model_as_churn_entered_live(tmp_path: Path) -> None:
    imported = await _train(tmp_path / "imported.db", book(400, imported_churned=True))
    live = await _train(tmp_path / "live.db", book(400, imported_churned=False))

    # Every customer is a label either way, in the same classes.
    assert imported.result["data"]["used"] == live.result["data"]["used"]
    assert imported.result["data"]["used"]["churned"] > 50 and imported.result["data"]["used"]["active"] > 200
    a, b = (job.result["metrics"]["model"]["roc_auc"] for job in (imported, live))
    assert abs(a - b) <= 0.01, (a, b)


async def test_two_books_in_one_store_each_trained_on_its_own_segment_report_the_same_examples_and_auc(
    tmp_path: Path,
) -> None:
    # Other customers in the store (another book) must not enter a run: each trains on its segment.
    events = book(200, imported_churned=True, segment="imported") + book(200, imported_churned=False, segment="live")
    async with sqlite_database(tmp_path / "both.db", metadata, source="/crm/scoring") as database:
        await _handle(database, events)
        imported = await _run_training(database, {"segment": "imported"})
        live = await _run_training(database, {"segment": "live"})
    used = imported.result["data"]["used"]
    assert used == live.result["data"]["used"] and used["churned"] > 30
    assert used["churned"] + used["active"] == 200
    assert imported.result["data"]["audience"] == {"segment": "imported", "attributes": {}, "customers_outside": 200}
    # The same examples under other ids: the same folds, so the same reported quality.
    a, b = (job.result["metrics"]["model"]["roc_auc"] for job in (imported, live))
    assert abs(a - b) <= 0.01, (a, b)


def _attribute_table(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    snapshots: list[dict[str, Any]] = []
    labels: list[int] = []
    for customer, _rows in subscriptions(n, seed):
        snapshots.append({f"attr.{k}": v for k, v in customer.attributes.items()})
        labels.append(int(customer.churned_at is not None))
    return snapshots, labels


def test_the_default_model_beats_plain_logistic_regression_on_the_generators_interactions_and_thresholds() -> None:
    # The generator's churn has interactions and thresholds (cli/generate.py: month-to-month customers leave
    # in their first months, electronic check matters without a contract, a price increase on the basic
    # plan), which one term per column cannot represent; the default model (gradient boosting) can.
    # Measured (five folds, 3,000 customers, seed 7): 0.7782 against 0.7597.
    snapshots, labels = _attribute_table(3000, seed=7)
    metrics = train(snapshots, labels).metrics
    model, baseline = metrics["model"]["roc_auc"], metrics["baseline_logistic"]["roc_auc"]
    assert baseline > 0.7, baseline  # the attributes carry the mechanism
    assert model > baseline + 0.01, (model, baseline)
    assert metrics["model"]["brier"] < metrics["baseline_logistic"]["brier"]
