"""Scoring a batch gives exactly what scoring each customer alone gives: the churn model, the value closed
forms, every score, and the rows and events the handlers write, one transaction per batch or per event."""

import functools
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from threadpoolctl import threadpool_limits

from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import unit_of_work
from services.scoring.handlers import BEFORE_BATCH, HANDLERS
from services.scoring.scores import scorer
from services.scoring.scores.features import FeatureState, customer_upserted, record_interaction
from services.scoring.scores.models import ScoreRecord
from services.scoring.scores.rules import DEFAULT_WEIGHTS
from services.scoring.settings import get_settings
from services.scoring.training import churn_model
from services.scoring.training.models import ChurnModelVersion, ValueModelVersion
from services.scoring.value import value_model as vm
from services.scoring.value.valuation import ValueModel
from tests.unit.scoring import events as ev

VALUE_MODEL = ValueModel(
    "value-test",
    vm.BgNbdParams(0.243, 4.414, 0.793, 2.426),  # CDNOW's published estimates
    vm.GammaGammaParams(6.25, 3.74, 15.44),
    vm.ClvSettings(),
    (120.0, 30.0, 10.0),
)


@pytest.fixture(autouse=True)
def every_event_scored_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # These events lie weeks back: as the clock moves on, the history horizon would give them one score per
    # customer and batch (test_history_batches proves that); here each event's own score is what is compared.
    monkeypatch.setattr(get_settings(), "history_horizon_days", 0.0)


def synthetic_training(n: int = 300, seed: int = 0) -> tuple[list[dict[str, Any]], list[int]]:
    """Snapshots with every kind of column: numbers, missing numbers, a category and a numeric attribute."""
    rng = np.random.default_rng(seed)
    snapshots, labels = [], []
    for i in range(n):
        snap: dict[str, Any] = {name: float(rng.gamma(2, 10)) for name in churn_model.EVENT_FEATURES}
        snap["last_nps"] = None if i % 4 == 0 else int(rng.integers(0, 11))
        snap["attr.segment"] = str(rng.choice(["smb", "enterprise", "public"]))
        snap["attr.seats"] = None if i % 7 == 0 else int(rng.integers(1, 100))
        snapshots.append(snap)
        labels.append(int(rng.random() < 0.2 + 0.03 * snap["complaints_30d"]))
    return snapshots, labels


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Gradient boosting's OpenMP threads slow it down ~30x on a busy 2-core machine; the results are the same.
    with threadpool_limits(limits=1):
        yield


@functools.cache
def train(algorithm: str) -> churn_model.TrainedChurnModel:
    snapshots, labels = synthetic_training(120)
    return churn_model.train(snapshots, labels, algorithm=algorithm, folds=2)


@pytest.fixture(scope="module", params=churn_model.ALGORITHMS)
def trained(request: pytest.FixtureRequest) -> churn_model.TrainedChurnModel:
    return train(request.param)


def test_batch_churn_inference_equals_per_row_inference(trained):
    snapshots, _ = synthetic_training(12, seed=9)
    snapshots[0]["attr.segment"] = "never-seen-in-training"
    snapshots[1] = {"days_since_last_purchase": 3.0}  # almost everything missing

    batch = trained.risk_and_factors_batch(snapshots)
    one_by_one = [trained.risk_and_factors(snap) for snap in snapshots]

    assert batch == one_by_one
    assert trained.predict(snapshots).tolist() == [trained.predict([snap])[0] for snap in snapshots]
    assert all(0 < risk < 1 and len(factors) <= churn_model.TOP_FACTORS for risk, factors in batch)


def _customers(n: int) -> list[tuple[FeatureState, Any]]:
    """Varied customers: buyers with different rhythms and spend, complainers, one who never bought."""
    out = []
    for c in range(n):
        state = FeatureState(customer_id=f"c{c}")
        customer_upserted(state, status="active", segment=["smb", "enterprise"][c % 2], attributes={"seats": c})
        for k in range(c % 6):
            at = ev.T0 + timedelta(days=k * (5 + c))
            record_interaction(state, interaction_id=f"p{c}-{k}", type="purchase", occurred_at=at, amount=10.0 + c * k)
        if c % 3 == 0:
            at = ev.T0 + timedelta(days=40)
            record_interaction(state, interaction_id=f"k{c}", type="complaint", occurred_at=at, severity="high")
        out.append((state, (state.last_event_at or ev.T0) + timedelta(days=c)))
    return out


@pytest.mark.parametrize("with_churn_model", [False, True])
def test_a_batch_of_customers_is_scored_exactly_as_each_customer_alone(with_churn_model):
    churn = train("logistic") if with_churn_model else None
    models = scorer.ActiveModels(VALUE_MODEL, "churn-test" if with_churn_model else None, churn)
    items = _customers(25)

    batch = scorer.compute_batch(items, models, DEFAULT_WEIGHTS)
    alone = [scorer.compute_scores(state, as_of, models, DEFAULT_WEIGHTS) for state, as_of in items]

    assert [c.columns() for c in batch] == [c.columns() for c in alone]
    assert [c.values() for c in batch] == [c.values() for c in alone]
    assert [c.value for c in batch] == [c.value for c in alone]
    assert any(c.value is None for c in batch) and any(c.value is not None for c in batch)


async def _install_models(database: Database) -> None:
    blob = train("logistic").dumps()
    async with database.transaction() as session:
        params = VALUE_MODEL.params_json()
        session.add(ValueModelVersion(id=VALUE_MODEL.id, params=params, calibration_end=date(2026, 1, 1), active=True))
        session.add(ChurnModelVersion(id="churn-test", algorithm="logistic", blob=blob, active=True))


def _stream() -> list[Any]:
    out: list[Any] = []
    for c in range(12):
        cid = f"c{c}"
        out += [ev.purchase(cid, id=f"{cid}-p{k}", days=k * (3 + c), amount=20 + c) for k in range(4)]
        out += [ev.complaint(cid, id=f"{cid}-k", days=30, severity="high"), ev.survey(cid, id=f"{cid}-s", score=c % 11)]
    out.sort(key=lambda e: e.data.model_dump().get("occurred_at") or e.data.model_dump().get("answered_at"))
    return out


async def _written(database: Database) -> list[tuple[Any, ...]]:
    async with database.sessions() as session:
        rows = (await session.execute(select(ScoreRecord).order_by(ScoreRecord.id))).scalars().all()
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars().all()
    events = [orjson.loads(p)["data"] for p in payloads]
    for data in events:
        del data["computed_at"], data["caused_by"]
    scores = [r.model_dump(exclude={"id", "computed_at", "caused_by"}) for r in rows]
    return list(zip(scores, events, strict=True))


@pytest.mark.parametrize("batch_size", [1, 7])
async def test_events_handled_in_one_batch_write_the_same_scores_and_events_as_smaller_batches(tmp_path, batch_size):
    """Preloaded batches (as the consumer applies a poll: the write-behind scores each in one call, the features
    rows come from one query, some present from earlier batches, some not) against small batches without preload
    (as the consumer's one-message-at-a-time fallback applies them)."""
    from services.scoring.main import metadata

    results = []
    for size, preloaded in ((batch_size, False), (25, True), (10_000, True)):
        database = Database(f"sqlite+aiosqlite:///{tmp_path / f'batch-{size}.db'}", source="/crm/scoring")
        async with database.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await _install_models(database)
        stream = _stream()
        for start in range(0, len(stream), size):
            async with unit_of_work(database) as uow:
                if preloaded:
                    await BEFORE_BATCH(uow, stream[start : start + size])
                for event in stream[start : start + size]:
                    await HANDLERS[event.envelope.type](uow, event)
        results.append(await _written(database))
        await database.dispose()

    assert len(results[0]) == len(_stream())
    assert results[0] == results[1] == results[2]
    assert {s["model_version"] for s, _ in results[0]} == {"churn-test"}
    assert all(s["p_alive"] is not None for s, _ in results[0])


async def test_a_preloaded_batch_reads_its_customers_features_in_one_query(tmp_path):
    from services.scoring.main import metadata

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}", source="/crm/scoring")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await _install_models(database)
    stream = _stream()
    half = len(stream) // 2
    statements: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    for batch in (stream[:half], stream[half:]):  # the second batch finds most rows stored by the first
        statements.clear()
        async with unit_of_work(database) as uow:
            await BEFORE_BATCH(uow, batch)
            for event in batch:
                await HANDLERS[event.envelope.type](uow, event)
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM customer_features" in s]
        assert len(reads) == 1, reads
    await database.dispose()


async def test_a_batch_writes_its_feature_rows_in_one_update_per_set_of_changed_lists(tmp_path):
    """Counters and times go with any change, so rows differ only by which JSON lists changed: a first
    purchase (which also sets first_purchase_at) and a repeat purchase are written by one UPDATE."""
    from services.scoring.main import metadata

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'writes.db'}", source="/crm/scoring")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await _install_models(database)
    before = [ev.complaint(f"k{c}", id=f"k{c}-k", days=1, severity="low") for c in range(3)]
    before += [ev.purchase(f"p{c}", id=f"p{c}-p0", days=1, amount=10) for c in range(3)]
    batch = [ev.purchase(f"{kind}{c}", id=f"{kind}{c}-p1", days=2, amount=20) for kind in "kp" for c in range(3)]
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    for events in (before, batch):  # the second batch's statements are kept
        statements.clear()
        async with unit_of_work(database) as uow:
            await BEFORE_BATCH(uow, events)
            for event in events:
                await HANDLERS[event.envelope.type](uow, event)
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE CUSTOMER_FEATURES")]
    assert len(updates) == 1, updates
    await database.dispose()
