from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.inbox import EventConsumer
from servicekit.tables import OUTBOX
from services.retention import service
from services.retention.handlers import HANDLERS
from services.retention.models import Alert, AlertStatus, Outcome
from services.retention.settings import RetentionSettings
from tests.unit.retention.events import complaint, score


async def apply(database: Database, *events: Received) -> None:
    """Apply events as one consumer batch does: one session, one transaction, the consumer commits."""
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](session, event)


async def alerts(database: Database) -> list[Alert]:
    async with database.sessions() as session:
        return list((await session.execute(select(Alert).order_by(Alert.created_at))).scalars())


async def published(database: Database, prefix: str = "alert.") -> list[dict[str, Any]]:
    """The outbox as the relay would publish it: decoded CloudEvents of one family, in order."""
    async with database.sessions() as session:
        rows = (await session.execute(select(OUTBOX.c.topic, OUTBOX.c.payload).order_by(OUTBOX.c.id))).all()
    assert {r.topic for r in rows} <= {"crm.retention.v1", "crm.erasure.v1"}
    return [e for r in rows if (e := orjson.loads(r.payload))["type"].startswith(prefix)]


def types(events: list[dict[str, Any]]) -> list[str]:
    """The alert events among them (task events have their own tests)."""
    return [e["type"] for e in events if e["type"].startswith("alert.")]


async def test_a_severe_complaint_raises_one_alert_and_one_alert_raised_event(database: Database):
    event = complaint(severity="critical")
    await apply(database, event)

    [alert] = await alerts(database)
    assert (alert.customer_id, alert.reason, alert.severity, alert.status) == (
        "c-1",
        "severe_complaint",
        "critical",
        "open",
    )
    assert alert.trigger_count == 1
    assert alert.event_ids == [event.id]
    assert alert.open_slot == "c-1:severe_complaint"
    [raised] = await published(database)
    assert raised["type"] == "alert.raised"
    assert raised["subject"] == "c-1"
    assert raised["data"]["alert_id"] == alert.id
    assert raised["data"]["event_ids"] == [event.id]


async def test_more_complaints_update_the_same_alert_and_publish_alert_updated(database: Database):
    events = [complaint(severity="high", minutes=i) for i in range(4)]
    await apply(database, events[0])
    for event in events[1:]:
        await apply(database, event)

    [alert] = await alerts(database)
    assert alert.trigger_count == 4
    assert alert.event_ids == [e.id for e in events]
    assert alert.last_triggered_at.minute == 3
    assert alert.first_triggered_at.minute == 0
    out = await published(database)
    assert types(out) == ["alert.raised", "alert.updated", "alert.updated", "alert.updated"]
    assert [e["data"]["trigger_count"] for e in out] == [1, 2, 3, 4]


async def test_the_same_event_applied_twice_changes_nothing(database: Database):
    event = complaint()
    await apply(database, event)
    await apply(database, event)  # e.g. redelivered and somehow past the inbox

    [alert] = await alerts(database)
    assert alert.trigger_count == 1
    assert types(await published(database)) == ["alert.raised"]


async def test_a_score_below_the_threshold_raises_nothing(database: Database):
    await apply(database, score(churn_risk=0.59))
    assert await alerts(database) == []
    assert await published(database) == []


async def test_a_high_score_raises_high_churn_risk_with_its_value_at_risk(database: Database):
    await apply(database, score(churn_risk=0.85, clv=1000.0))
    [alert] = await alerts(database)
    assert (alert.reason, alert.severity, alert.churn_risk, alert.value_at_risk) == (
        "high_churn_risk",
        "high",
        0.85,
        850.0,
    )
    assert alert.factors == [{"code": "recency_drop", "label": "No purchase for 90 days", "contribution": 0.3}]
    [raised] = await published(database)
    assert raised["data"]["churn_risk"] == 0.85
    assert raised["data"]["value_at_risk"] == 850.0


async def test_two_triggers_for_one_customer_in_one_batch_make_one_alert(database: Database):
    first, second = complaint(minutes=0), complaint(minutes=1)
    await apply(database, first, second)

    [alert] = await alerts(database)
    assert alert.trigger_count == 2
    assert types(await published(database)) == ["alert.raised", "alert.updated"]


async def test_a_resolved_alert_frees_the_slot_so_a_new_trigger_raises_a_new_alert(database: Database):
    await apply(database, complaint(minutes=0))
    [first] = await alerts(database)
    async with database.transaction() as session:
        await service.resolve_alert(session=session, alert_id=first.id, outcome=Outcome.saved)

    await apply(database, complaint(minutes=10))
    old, new = await alerts(database)
    assert (old.id, old.status, old.open_slot, old.outcome) == (first.id, "resolved", None, "saved")
    assert (new.status, new.trigger_count, new.open_slot) == ("open", 1, "c-1:severe_complaint")
    assert types(await published(database)) == ["alert.raised", "alert.resolved", "alert.raised"]


async def test_a_snoozed_alert_takes_new_evidence_without_notifying(database: Database):
    await apply(database, complaint(severity="high", minutes=0))
    [alert] = await alerts(database)
    async with database.transaction() as session:
        stored = await session.get(Alert, alert.id)
        stored.status = AlertStatus.snoozed  # the snooze endpoint comes later

    await apply(database, complaint(severity="critical", minutes=5))
    [alert] = await alerts(database)
    assert (alert.status, alert.trigger_count, alert.severity) == ("snoozed", 2, "critical")
    assert types(await published(database)) == ["alert.raised"]


async def test_an_unresolved_alert_escalates_but_never_downgrades(database: Database):
    await apply(database, complaint(severity="critical", minutes=0), complaint(severity="high", minutes=1))
    [alert] = await alerts(database)
    assert alert.severity == "critical"


async def test_a_complaint_alert_carries_the_latest_known_value_at_risk(database: Database):
    # The score came first (other topic, no mutual order): the complaint's alert still gets its value.
    await apply(database, score(churn_risk=0.3, clv=2000.0, minutes=0))
    await apply(database, complaint(minutes=1))
    [alert] = await alerts(database)
    assert (alert.churn_risk, alert.value_at_risk) == (0.3, 600.0)

    # A later score refreshes it, silently: the alert was not triggered again.
    await apply(database, score(churn_risk=0.4, clv=2000.0, minutes=2))
    [alert] = await alerts(database)
    assert (alert.churn_risk, alert.value_at_risk, alert.trigger_count) == (0.4, 800.0, 1)
    assert types(await published(database)) == ["alert.raised"]


async def test_a_score_older_than_the_latest_is_ignored(database: Database):
    await apply(database, score(churn_risk=0.3, minutes=10))
    await apply(database, score(churn_risk=0.9, minutes=5))  # arrives late
    assert await alerts(database) == []


async def test_the_consumer_applies_the_handlers_once_per_event(database: Database):
    """Through the real consumer: registered handlers, inbox de-duplication, one batch."""
    settings = RetentionSettings(database_url=database.url)
    consumer = EventConsumer(database, settings, HANDLERS, ["crm.interaction.v1", "crm.scoring.v1"])
    events = [complaint(minutes=0), complaint(minutes=1)]
    records = [_record(e, offset) for offset, e in enumerate([*events, events[0]])]

    await consumer.apply_batch([consumer.decode(r) for r in records])

    [alert] = await alerts(database)
    assert alert.trigger_count == 2
    assert types(await published(database)) == ["alert.raised", "alert.updated"]


def _record(event: Received, offset: int) -> ConsumerRecord:
    value = event.envelope.to_json()
    return ConsumerRecord(
        topic="crm.interaction.v1",
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
