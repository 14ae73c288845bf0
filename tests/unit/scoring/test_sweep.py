"""The silent-customer sweep: who is due and what counts as a change (pure), then passes against SQLite."""

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from contracts.scoring import ScoreValues
from servicekit.db import Database
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.scoring import background
from services.scoring.handlers import HANDLERS
from services.scoring.scores import service
from services.scoring.scores.models import CurrentScore, CustomerFeatures, ScoreRecord
from services.scoring.scores.sweep import ChangeThresholds, meaningful_change, sweep_as_of
from services.scoring.settings import ScoringSettings
from services.scoring.training.models import ValueModelVersion
from tests.unit.scoring import events as ev
from tests.unit.scoring.test_batch_scoring import VALUE_MODEL

CLOCK = datetime(2026, 12, 31, tzinfo=UTC)
DAY = timedelta(days=1)


# ---- who is due ----------------------------------------------------------------------------------------


def test_a_customer_whose_score_is_a_day_older_than_the_clock_is_due_at_the_clock():
    last = CLOCK - 40 * DAY
    assert sweep_as_of(status="active", last_event_at=last, looked_at=last, clock=CLOCK, min_age=DAY) == CLOCK
    assert sweep_as_of(status=None, last_event_at=last, looked_at=CLOCK - DAY, clock=CLOCK, min_age=DAY) == CLOCK


def test_a_customer_scored_or_swept_within_the_min_age_is_not_due():
    last = CLOCK - 40 * DAY
    recently = CLOCK - timedelta(hours=23)
    assert sweep_as_of(status="active", last_event_at=last, looked_at=recently, clock=CLOCK, min_age=DAY) is None
    assert sweep_as_of(status="active", last_event_at=last, looked_at=CLOCK, clock=CLOCK, min_age=DAY) is None


def test_churned_customers_and_customers_never_seen_in_an_interaction_are_never_due():
    last = CLOCK - 40 * DAY
    assert sweep_as_of(status="churned", last_event_at=last, looked_at=last, clock=CLOCK, min_age=DAY) is None
    assert sweep_as_of(status="active", last_event_at=None, looked_at=None, clock=CLOCK, min_age=DAY) is None


def test_a_customer_is_never_scored_before_its_own_latest_event():
    later = CLOCK + 3 * DAY  # the wall clock behind an event's business time
    as_of = sweep_as_of(status="active", last_event_at=later, looked_at=CLOCK - 5 * DAY, clock=CLOCK, min_age=DAY)
    assert as_of == later


# ---- what changes --------------------------------------------------------------------------------------

BEFORE = ScoreValues(churn_risk=0.30, health=60.0, value_tier="gold", lifecycle_stage="stability", p_alive=0.80)


def _after(**changes: Any) -> ScoreValues:
    return BEFORE.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "published"),
    [
        ({}, False),
        ({"churn_risk": 0.309, "health": 59.1, "p_alive": 0.791}, False),  # every move below its threshold
        ({"churn_risk": 0.31}, True),
        ({"churn_risk": 0.29}, True),
        ({"health": 59.0}, True),
        ({"p_alive": 0.79}, True),
        ({"value_tier": "iron"}, True),
        ({"lifecycle_stage": "decline"}, True),
        ({"p_alive": None}, True),
    ],
)
def test_a_score_is_published_when_one_value_moves_at_least_its_threshold_or_a_tier_or_stage_changes(
    changes, published
):
    assert meaningful_change(BEFORE, _after(**changes), ChangeThresholds()) is published


def test_a_customer_without_a_published_score_always_gets_one():
    assert meaningful_change(None, BEFORE, ChangeThresholds())


def test_thresholds_are_configurable_as_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("SCORING_SWEEP_MIN_CHANGE", '{"churn_risk": 0.05}')
    thresholds = ScoringSettings().sweep_min_change
    assert (thresholds.churn_risk, thresholds.health) == (0.05, 1.0)
    assert not meaningful_change(BEFORE, _after(churn_risk=0.34), thresholds)


# ---- passes against a database -------------------------------------------------------------------------


async def handle(database: Database, *events: Any) -> None:
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def history(database: Database, customer_id: str) -> list[ScoreRecord]:
    async with database.sessions() as session:
        query = select(ScoreRecord).where(ScoreRecord.customer_id == customer_id).order_by(ScoreRecord.id)
        return list((await session.execute(query)).scalars())


async def published(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars()
        return [orjson.loads(p)["data"] for p in payloads]


async def activate_value_model(database: Database) -> None:
    async with database.transaction() as session:
        params = VALUE_MODEL.params_json()
        session.add(ValueModelVersion(id=VALUE_MODEL.id, params=params, calibration_end=date(2026, 1, 1), active=True))


def silent_and_busy() -> list[Any]:
    """ "quiet" buys every 10 days, then nothing after day 20; "busy" keeps buying up to day 90 (the data clock)."""
    quiet = [ev.purchase("quiet", id=f"q{k}", days=10 * k, amount=40) for k in range(3)]
    busy = [ev.purchase("busy", id=f"b{k}", days=10 * k, amount=40) for k in range(10)]
    return [*quiet, *busy, ev.customer_created("gone", status="churned"), ev.purchase("gone", id="g0", days=0)]


async def test_a_silent_customer_gets_riskier_and_less_likely_alive_and_is_published_once(database):
    await activate_value_model(database)
    await handle(database, *silent_and_busy())
    before = await history(database, "quiet")
    n_published = len(await published(database))
    settings = ScoringSettings()

    result = await background.sweep_once(database, settings)

    clock = ev.T0 + 90 * DAY  # the latest event held: busy's last purchase
    assert (result["clock"], result["scored"], result["published"]) == (clock.isoformat(), 1, 1)
    after = await history(database, "quiet")
    assert len(after) == len(before) + 1
    swept = after[-1]
    assert (swept.caused_by, swept.caused_by_type) == (f"sweep:{clock.isoformat()}", service.SWEEP_CAUSE)
    assert swept.as_of == clock
    assert swept.churn_risk > before[-1].churn_risk
    assert swept.p_alive is not None and before[-1].p_alive is not None and swept.p_alive < before[-1].p_alive
    assert any(f["code"] == "recency_drop" for f in swept.factors["churn_risk"])
    [update] = (await published(database))[n_published:]
    assert update["customer_id"] == "quiet" and update["caused_by"] == swept.caused_by
    assert update["previous"]["churn_risk"] == before[-1].churn_risk
    assert update["current"]["churn_risk"] == swept.churn_risk
    async with database.sessions() as session:
        current = await session.get(CurrentScore, "quiet")
    assert current is not None and current.score_id == swept.id

    # The same clock again: nobody is due, nothing is written or published.
    again = await background.sweep_once(database, settings)
    assert (again["scored"], again["published"]) == (0, 0)
    assert len(await history(database, "quiet")) == len(after)
    assert len(await published(database)) == n_published + 1
    assert [r.caused_by_type for r in await history(database, "gone")] == [
        "customer.created",
        "interaction.recorded",
    ]  # churned: never swept


async def test_a_move_below_the_thresholds_is_not_published_but_the_customer_is_not_looked_at_again(database):
    # Both still exploring at the clock (day 50), so no stage changes; no move reaches these thresholds.
    quiet = [ev.purchase("quiet", id=f"q{k}", days=10 * k, amount=40) for k in range(3)]
    await handle(database, *quiet, *[ev.purchase("busy", id=f"b{k}", days=10 * k) for k in range(6)])
    before = await history(database, "quiet")
    n_published = len(await published(database))
    settings = ScoringSettings(sweep_min_change=ChangeThresholds(churn_risk=1.0, health=100.0, p_alive=1.0))

    result = await background.sweep_once(database, settings)

    assert (result["scored"], result["published"]) == (1, 0)
    assert len(await history(database, "quiet")) == len(before)
    assert len(await published(database)) == n_published
    async with database.sessions() as session:
        row = await session.get(CustomerFeatures, "quiet")
    assert row is not None and row.swept_at == ev.T0 + 50 * DAY
    assert (await background.sweep_once(database, settings))["scored"] == 0

    # Once the clock has moved on by the minimum age, the customer is looked at again.
    later = await background.sweep_once(database, settings, clock=ev.T0 + 51 * DAY)
    assert later["scored"] == 2  # quiet, and busy (its score is now a day old too)


async def test_a_sweep_works_through_every_customer_in_batches(database):
    customers = [ev.purchase(f"c{i:02d}", id=f"p{i}", days=0) for i in range(7)]
    await handle(database, *customers, ev.purchase("clock", id="late", days=60))

    result = await background.sweep_once(database, ScoringSettings(sweep_batch=3))

    assert (result["scored"], result["published"]) == (7, 7)
    assert [len(await history(database, f"c{i:02d}")) for i in range(7)] == [2] * 7


async def test_the_sweep_loop_is_off_when_its_interval_is_zero(database):
    app = SimpleNamespace(state=SimpleNamespace(settings=ScoringSettings(sweep_interval_s=0), database=database))
    await background.sweep_silent_customers(app)  # type: ignore[arg-type]  # returns instead of looping
