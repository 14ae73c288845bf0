"""Handlers against a real (temp-file SQLite) database: features, score history, current scores, outbox."""

from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select

from contracts import topics
from servicekit.db import Database
from servicekit.inbox import EventConsumer, PoisonEvent
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.scoring.handlers import HANDLERS
from services.scoring.scores.models import CurrentScore, CustomerFeatures, ScoreRecord
from services.scoring.settings import ScoringSettings, get_settings
from tests.statements import statements_sent
from tests.unit.scoring import events as ev


@pytest.fixture(autouse=True)
def every_event_scored_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # These events lie weeks back: as the clock moves on, the history horizon would give them one score per
    # customer and batch (test_history_batches proves that); here each event's own score is what is compared.
    monkeypatch.setattr(get_settings(), "history_horizon_days", 0.0)


async def handle(database: Database, *events: Any) -> None:
    """Apply events in one transaction, as the consumer applies a batch."""
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's batch
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def score_updates(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        query = select(OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload).order_by(OUTBOX.c.id)
        rows = (await session.execute(query)).all()
    assert all(r.topic == topics.SCORING for r in rows)
    envelopes = [orjson.loads(r.payload) for r in rows]
    assert all(e["type"] == "score.updated" and e["subject"] == r.key for e, r in zip(envelopes, rows, strict=True))
    return [e["data"] for e in envelopes]


async def history(database: Database, customer_id: str = "c-1") -> list[ScoreRecord]:
    async with database.sessions() as session:
        query = select(ScoreRecord).where(ScoreRecord.customer_id == customer_id).order_by(ScoreRecord.id)
        return list((await session.execute(query)).scalars())


async def current(database: Database, customer_id: str = "c-1") -> CurrentScore | None:
    async with database.sessions() as session:
        return await session.get(CurrentScore, customer_id)


async def features_row(database: Database, customer_id: str = "c-1") -> CustomerFeatures | None:
    async with database.sessions() as session:
        return await session.get(CustomerFeatures, customer_id)


async def test_a_complaint_writes_one_history_row_and_one_score_updated_then_the_next_carries_previous(database):
    first = ev.complaint(id="k1", severity="high")
    await handle(database, first)

    rows = await history(database)
    assert len(rows) == 1
    assert (rows[0].caused_by, rows[0].caused_by_type, rows[0].model_version) == (
        first.id,
        "interaction.recorded",
        "rules-v1",
    )
    published = await score_updates(database)
    assert len(published) == 1
    assert published[0]["previous"] is None
    assert published[0]["current"]["churn_risk"] == rows[0].churn_risk == pytest.approx(0.1978, abs=1e-4)
    assert published[0]["current"]["health"] == rows[0].health
    assert published[0]["caused_by"] == first.id
    assert published[0]["model_version"] == "rules-v1"
    assert {f["code"] for f in published[0]["factors"]} == {"complaints_30d", "severe_complaints", "open_complaints"}
    assert {f["code"] for f in rows[0].factors["churn_risk"]} == {
        "complaints_30d",
        "severe_complaints",
        "open_complaints",
    }
    assert rows[0].factors["health"][0]["code"] == "staying"

    second = ev.complaint(id="k2", days=1)
    await handle(database, second)
    published = await score_updates(database)
    assert len(published) == 2
    assert published[1]["previous"] == published[0]["current"]
    assert published[1]["current"]["churn_risk"] > published[0]["current"]["churn_risk"]
    assert published[1]["caused_by"] == second.id
    now = await current(database)
    assert now is not None
    assert (now.churn_risk, now.caused_by) == (published[1]["current"]["churn_risk"], second.id)
    assert len(await history(database)) == 2


async def test_events_for_one_customer_in_one_batch_build_on_each_other(database):
    batch = [
        ev.purchase(id="p1", days=-60),
        ev.complaint(id="k1", days=-2),
        ev.complaint(id="k2", days=-1),
        ev.complaint(id="k3", days=0),
    ]
    await handle(database, *batch)
    rows = await history(database)
    assert [r.caused_by for r in rows] == [e.id for e in batch]
    labels = [{f["code"]: f["label"] for f in r.factors["churn_risk"]} for r in rows[1:]]
    assert [lab["complaints_30d"] for lab in labels] == [
        "1 complaint in the last 30 days",
        "2 complaints in the last 30 days",
        "3 complaints in the last 30 days",
    ]
    published = await score_updates(database)
    assert [p["previous"] for p in published[1:]] == [p["current"] for p in published[:-1]]
    assert rows[-1].churn_risk > 0.6  # three complaints after 60 days without a purchase
    feats = await features_row(database)
    assert (feats.purchases, feats.complaints_total, feats.open_complaints) == (1, 3, 3)


async def test_the_real_consumer_applies_a_batch_once_and_skips_its_redelivery(database):
    settings = ScoringSettings(database_url=database.url)
    consumer = EventConsumer(database, settings, HANDLERS, [topics.CUSTOMER, topics.INTERACTION])
    batch = [
        ev.complaint(id="k1"),
        ev.complaint(id="k2", days=1),
        ev.complaint_updated(id="k1", status="resolved", days=2),
    ]
    records = [_record(e, offset) for offset, e in enumerate(batch)]
    await consumer.apply_batch([consumer.decode(r) for r in records])
    await consumer.apply_batch([consumer.decode(r) for r in records])  # redelivered after a crash
    assert len(await history(database)) == 3
    assert len(await score_updates(database)) == 3
    feats = await features_row(database)
    assert (feats.complaints_total, feats.open_complaints) == (2, 1)


async def test_an_interaction_before_customer_created_creates_the_features_and_created_keeps_them(database):
    await handle(database, ev.purchase(id="p1", days=0))
    await handle(database, ev.customer_created(segment="smb"))
    feats = await features_row(database)
    assert (feats.purchases, feats.segment, feats.status, feats.attributes) == (1, "smb", "active", {"plan": "pro"})
    # The late creation rescores (its profile may matter to the model) without losing the purchase.
    records = await history(database)
    assert [r.caused_by_type for r in records] == ["interaction.recorded", "customer.created"]
    assert records[-1].snapshot["purchases"] == 1
    await handle(database, ev.customer_updated(segment="enterprise", version=2, changed=["segment"]))
    assert (await features_row(database)).segment == "enterprise"


async def test_a_duplicate_close_does_not_double_decrement_and_writes_no_score(database):
    await handle(database, ev.complaint(id="k1"), ev.complaint(id="k2"))
    await handle(database, ev.complaint_updated(id="k1", status="resolved", days=1))
    await handle(database, ev.complaint_updated(id="k1", status="closed", days=2))  # same close, new event id
    feats = await features_row(database)
    assert feats.open_complaints == 1
    assert feats.open_complaint_ids == {"k2": "medium"}
    assert len(await history(database)) == 3
    assert len(await score_updates(database)) == 3


async def test_the_same_interaction_under_a_new_event_id_is_not_scored_again(database):
    await handle(database, ev.complaint(id="k1"))
    await handle(database, ev.complaint(id="k1"))
    assert (await features_row(database)).complaints_total == 1
    assert len(await history(database)) == 1


async def test_overdue_complaints_raise_the_score(database):
    await handle(database, ev.complaint(id="k1", severity="high"))
    await handle(database, ev.complaint_overdue(id="k1", days=2, severity="high"))
    rows = await history(database)
    assert rows[1].churn_risk > rows[0].churn_risk
    assert "overdue_complaints" in {f["code"] for f in rows[1].factors["churn_risk"]}
    assert rows[1].caused_by_type == "complaint.overdue"


async def test_surveys_are_scored_from_survey_answered_and_not_from_the_survey_interaction(database):
    await handle(database, ev.interaction(type="survey", id="s1"))
    assert await features_row(database) is not None  # seen, but nothing to score
    assert await history(database) == []
    await handle(database, ev.survey(id="s1", score=3))
    rows = await history(database)
    assert len(rows) == 1
    assert rows[0].factors["churn_risk"][0]["label"] == "Last NPS 3 (detractor)"
    assert (await features_row(database)).nps_count == 1


async def test_a_survey_score_off_its_scale_is_a_poison_event(database):
    with pytest.raises(PoisonEvent):
        await handle(database, ev.survey(id="s1", survey="csat", score=9))


async def test_erasure_removes_features_and_history_and_later_events_do_not_bring_them_back(database):
    await handle(database, ev.customer_created(), ev.complaint(id="k1"), ev.complaint(customer_id="c-2", id="k9"))
    await handle(database, ev.customer_erased())
    await handle(database, ev.complaint(id="k2", days=1))
    feats = await features_row(database)
    assert feats.erased and feats.complaints_total == 0 and feats.segment is None and feats.attributes == {}
    assert await history(database) == []
    assert await current(database) is None
    assert len(await history(database, "c-2")) == 1  # other customers untouched


async def test_scores_depend_on_event_times_only_so_a_replay_gives_the_same_scores(database):
    def story(customer_id: str) -> list[Any]:
        return [
            ev.purchase(customer_id, id="p1", days=-90),
            ev.purchase(customer_id, id="p2", days=-60),
            ev.complaint(customer_id, id="k1", days=-3, severity="high"),
            ev.survey(customer_id, id="s1", score=4, days=-1),
            ev.complaint_updated(customer_id, id="k1", status="resolved", days=0),
        ]

    await handle(database, *story("first"))
    await handle(database, *story("replayed"))
    first, replayed = await history(database, "first"), await history(database, "replayed")
    assert [(r.churn_risk, r.health, r.factors, r.as_of) for r in first] == [
        (r.churn_risk, r.health, r.factors, r.as_of) for r in replayed
    ]
    async with database.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(ScoreRecord))).scalar_one() == 10


def _record(event: Any, offset: int) -> ConsumerRecord:
    value = event.envelope.to_json()
    return ConsumerRecord(
        topic=topics.INTERACTION,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"c-1",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value),
        headers=[],
    )


async def test_erasure_is_confirmed_once_so_the_customers_erasure_can_complete(database):
    await handle(database, ev.customer_created(), ev.customer_erased())
    await handle(database, ev.customer_erased())  # redelivered: no second receipt
    async with database.sessions() as session:
        rows = (await session.execute(select(OUTBOX.c.topic, OUTBOX.c.payload))).all()
    receipts = [orjson.loads(r.payload) for r in rows if r.topic == topics.ERASURE]
    assert [(e["type"], e["data"]["customer_id"], e["data"]["service"]) for e in receipts] == [
        ("erasure.confirmed", "c-1", "scoring")
    ]


async def test_a_batch_updates_its_features_rows_in_one_statement_whatever_each_event_changed(database):
    customers = ["c-1", "c-2", "c-3"]
    await handle(database, *[ev.purchase(c, id=f"p0-{c}", days=-30) for c in customers])
    # A purchase, a complaint and a survey answer change different columns (spend, complaint lists, NPS).
    batch = [
        ev.purchase("c-1", id="p1", days=0),
        ev.complaint("c-2", id="k1", days=0),
        ev.survey("c-3", id="s1", score=3, days=0),
    ]
    with statements_sent(database.engine.sync_engine, "UPDATE") as updates:
        await handle(database, *batch)

    assert len([s for s in updates if "customer_features" in s]) == 1
    rows = {c: await features_row(database, c) for c in customers}
    assert (rows["c-1"].purchases, rows["c-1"].complaints_total, rows["c-1"].nps_count) == (2, 0, 0)
    assert (rows["c-2"].purchases, rows["c-2"].complaints_total, rows["c-2"].open_complaints) == (1, 1, 1)
    assert (rows["c-3"].purchases, rows["c-3"].last_nps, rows["c-3"].nps_count) == (1, 3, 1)
