from operator import attrgetter
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import event as sa_event
from sqlalchemy import select

from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.inbox import EventConsumer
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts.actions import resolve_alert
from services.retention.alerts.models import Alert, AlertStatus, Outcome
from services.retention.handlers import BEFORE_BATCH, HANDLERS, preload
from services.retention.replica.models import Customer, CustomerScore
from services.retention.settings import RetentionSettings
from services.retention.tasks.models import Task
from tests.unit.retention.conftest import create_schema
from tests.unit.retention.events import complaint, created, score, status_changed, updated


async def apply(database: Database, *events: Received) -> None:
    """Apply events as one consumer batch does: one session, one transaction, the consumer commits."""
    async with database.transaction() as session:
        uow = UnitOfWork(session)  # one per transaction, as the consumer's
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)


async def alerts(database: Database) -> list[Alert]:
    async with database.sessions() as session:
        return list((await session.execute(select(Alert).order_by(Alert.created_at))).scalars())


async def scores(database: Database) -> list[CustomerScore]:
    async with database.sessions() as session:
        return list((await session.execute(select(CustomerScore))).scalars())


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
        await resolve_alert(uow=UnitOfWork(session), alert_id=first.id, outcome=Outcome.saved)

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


ALERT_DECISIONS = attrgetter(
    "customer_id", "reason", "first_triggered_at", "severity", "status", "outcome", "trigger_count", "event_ids",
    "churn_risk", "value_at_risk", "risk_below_since", "owner", "tier", "control", "open_slot",
)  # fmt: skip


async def _state(database: Database) -> list[Any]:
    """Everything the handlers decide, without the generated ids and clock times."""
    async with database.sessions() as session:
        alert_rows = (await session.execute(select(Alert))).scalars().all()
        task_rows = (await session.execute(select(Task))).scalars().all()
        score_rows = (await session.execute(select(CustomerScore))).scalars().all()
    decided: list[Any] = sorted(map(ALERT_DECISIONS, alert_rows))
    decided += sorted((t.customer_id, t.reason, t.action, t.owner, t.status) for t in task_rows)
    decided += sorted((s.customer_id, s.churn_risk, s.lifecycle_stage, s.as_of) for s in score_rows)
    decided += sorted((e["type"], e["subject"]) for e in await published(database, ""))
    return decided


async def test_a_preloaded_batch_decides_exactly_what_one_event_per_transaction_decides(tmp_path):
    """The batch path (preload, per-transaction caches) against one fresh transaction per event."""
    events = [
        complaint("c-2", minutes=1),  # overtakes the creation of c-2
        created("c-1", owner="anna", tier="gold"),
        created("c-2", owner="ben"),
        score("c-1", 0.3, minutes=2, stage="active"),
        score("c-1", 0.65, minutes=3, stage="decline"),  # high risk, a jump, a decline
        score("c-1", 0.9, minutes=4),  # escalates the same alerts
        complaint("c-1", "high", minutes=5),
        score("c-2", 0.7, minutes=6, tier=None),
        score("c-2", 0.6, minutes=1),  # older than the latest: ignored
        updated("c-2", owner="cleo"),  # takes over c-2's open work
        score("c-1", 0.1, minutes=7),  # risk back down: the auto-save clock starts
        complaint("c-1", "high", minutes=5),  # another event id with the same content
        status_changed("c-2"),  # churned: alerts resolved, win-back tasks
        score("c-2", 0.95, minutes=8),  # a new alert after the churn
        score("c-3", 0.8, minutes=9),  # a customer with no replica
        score("c-4", 0.85, minutes=11),
        score("c-4", 0.2, minutes=10),  # older, later in the batch: not history for the score before it
    ]
    one_by_one = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", source="/crm/retention")
    batched = Database(f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}", source="/crm/retention")
    for db in (one_by_one, batched):
        await create_schema(db)
    for event in events:
        await apply(one_by_one, event)
    consumer = EventConsumer(
        batched, RetentionSettings(database_url=batched.url), HANDLERS, ["t"], before_batch=BEFORE_BATCH
    )
    fell_back = []
    consumer.apply_one = fell_back.append  # type: ignore[method-assign]  # the batch must apply as a whole
    await consumer.apply_batch([consumer.decode(_record(e, offset)) for offset, e in enumerate(events)])

    assert fell_back == []
    assert await _state(batched) == await _state(one_by_one)
    await one_by_one.dispose()
    await batched.dispose()


async def test_a_batch_of_score_updates_costs_the_same_statements_whatever_its_size(tmp_path):
    """Signals, score rows and alert look-ups are written and read per batch, not per event."""
    counts = []
    for size in (10, 40):
        database = Database(f"sqlite+aiosqlite:///{tmp_path / f'size-{size}.db'}", source="/crm/retention")
        await create_schema(database)
        consumer = EventConsumer(
            database, RetentionSettings(database_url=database.url), HANDLERS, ["t"], before_batch=BEFORE_BATCH
        )
        first = [score(f"c-{i}", 0.2, minutes=1) for i in range(size)]  # new score rows
        second = [score(f"c-{i}", 0.3, minutes=2) for i in range(size)]  # updated score rows
        statements: list[str] = []
        sa_event.listen(
            database.engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *args, seen=statements: seen.append(statement),
        )
        for batch in (first, second):
            await consumer.apply_batch([consumer.decode(_record(e, offset)) for offset, e in enumerate(batch)])
        counts.append(len(statements))
        assert len(await scores(database)) == size
        await database.dispose()

    assert counts[0] == counts[1]


async def test_a_risk_jump_is_seen_in_the_stored_score_history(database: Database):
    """Neither event carries the earlier score (previous=None): the jump comes from the stored signals."""
    await apply(database, score("c-1", 0.2, minutes=1, stage="active"))
    await apply(database, score("c-1", 0.6, minutes=2, stage="active"))
    jumps = [a for a in await alerts(database) if a.reason == "risk_jump"]
    assert len(jumps) == 1 and jumps[0].churn_risk == 0.6


async def test_a_batch_inserts_its_new_alerts_and_latest_scores_in_one_statement_each(database: Database):
    events = [e for c in ("c-1", "c-2", "c-3") for e in (score(c, churn_risk=0.9), complaint(c, minutes=1))]
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await preload(uow, events)
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)
    inserts = [s.split("(")[0].strip() for s in statements if s.lstrip().upper().startswith("INSERT INTO")]
    assert len(await alerts(database)) == 6 and len(await scores(database)) == 3
    assert inserts.count("INSERT INTO alerts") == 1
    assert inserts.count("INSERT INTO customer_scores") == 1


async def test_a_batch_of_new_customers_inserts_their_replicas_in_one_statement(database: Database):
    # An import's batch: hundreds of customer.created, none owned yet.
    events = [created(f"c-{i}", owner=None) for i in range(40)]
    statements: list[str] = []
    remember = lambda c, cur, sql, *a: statements.append(sql)  # noqa: E731
    sa_event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    async with database.transaction() as session:
        uow = UnitOfWork(session)
        await preload(uow, events)
        for event in events:
            await HANDLERS[event.envelope.type](uow, event)
    sa_event.remove(database.engine.sync_engine, "before_cursor_execute", remember)
    inserts = [s.split("(")[0].strip() for s in statements if s.lstrip().upper().startswith("INSERT INTO")]
    assert inserts.count("INSERT INTO customers") == 1
    async with database.sessions() as session:
        replicas = (await session.execute(select(Customer).order_by(Customer.customer_id))).scalars().all()
    assert len(replicas) == 40 and {r.version for r in replicas} == {1} and replicas[0].segment == "smb"
