"""The retention loop on a real (SQLite) database: tasks, snooze, outcomes, erasure, webhooks, change log."""

from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from contracts.scoring import Factor
from servicekit.clock import utc_now
from servicekit.db import Database
from servicekit.events.envelope import Received
from servicekit.tables import OUTBOX
from servicekit.unit_of_work import UnitOfWork
from services.retention.alerts import actions
from services.retention.alerts.models import Alert, AlertChange, Outcome
from services.retention.background import prune
from services.retention.handlers import HANDLERS
from services.retention.playbooks.models import Playbook
from services.retention.rules.core import Rule, RuleKind, RuleParams
from services.retention.rules.service import preview_rule
from services.retention.signals.models import Signal
from services.retention.tasks.models import Task
from services.retention.tasks.service import complete_task
from services.retention.webhooks.models import Webhook, WebhookDelivery
from tests.unit.retention.events import T0, complaint, created, erased, score, status_changed, updated


async def apply(database: Database, *events: Received) -> None:
    async with database.transaction() as session:
        for event in events:
            await HANDLERS[event.envelope.type](UnitOfWork(session), event)


async def rows(database: Database, table: Any) -> list[Any]:
    async with database.sessions() as session:
        return list((await session.execute(select(table))).scalars())


async def outbox(database: Database) -> list[dict[str, Any]]:
    async with database.sessions() as session:
        payloads = (await session.execute(select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).scalars()
        return [orjson.loads(p) for p in payloads]


async def test_a_raised_alert_gets_its_playbooks_tasks_for_the_customers_owner(database: Database):
    await apply(database, created(owner="anna", tier="platinum"), complaint(severity="high"))
    [alert] = await rows(database, Alert)
    assert (alert.owner, alert.tier, alert.segment, alert.control) == ("anna", "platinum", "smb", False)
    tasks = sorted(await rows(database, Task), key=lambda t: t.action)
    assert [(t.action, t.owner, t.alert_id) for t in tasks] == [
        ("call_owner", "anna", alert.id),
        ("executive_outreach", "anna", alert.id),  # platinum only
        ("service_recovery", "anna", alert.id),
    ]
    recovery = next(t for t in tasks if t.action == "service_recovery")
    assert timedelta(hours=23) < recovery.due_at - utc_now() <= timedelta(hours=24)
    events = await outbox(database)
    assert [e["type"] for e in events] == ["alert.raised"] + ["task.created"] * 3
    assert {e["data"]["owner"] for e in events[1:]} == {"anna"}


async def test_more_triggers_update_the_alert_without_new_tasks(database: Database):
    await apply(database, created(), complaint(minutes=0))
    await apply(database, complaint(minutes=1), complaint(minutes=2), complaint(minutes=3))
    [alert] = await rows(database, Alert)
    assert alert.trigger_count == 4
    assert len(await rows(database, Task)) == 2  # service_recovery + call_owner, once


async def test_a_control_alert_gets_no_tasks_and_is_flagged(database: Database):
    async with database.transaction() as session:
        playbook = (await session.execute(select(Playbook).where(Playbook.reason == "severe_complaint"))).scalar_one()
        playbook.control_share = 1.0
    await apply(database, created(), complaint())
    [alert] = await rows(database, Alert)
    assert alert.control is True
    assert await rows(database, Task) == []
    [raised] = await outbox(database)
    assert raised["data"]["control"] is True


async def test_a_snoozed_alert_stays_quiet_until_its_date_then_opens_again(database: Database):
    await apply(database, complaint(minutes=0))
    [alert] = await rows(database, Alert)
    now = utc_now()
    async with database.transaction() as session:
        await actions.snooze_alert(
            uow=UnitOfWork(session), alert_id=alert.id, until=now + timedelta(days=3), reason="on leave"
        )
    before = len(await outbox(database))
    await apply(database, complaint(minutes=5))
    [alert] = await rows(database, Alert)
    assert (alert.status, alert.trigger_count) == ("snoozed", 2)
    assert len(await outbox(database)) == before  # silent

    async with database.transaction() as session:
        assert await actions.wake_snoozed(uow=UnitOfWork(session), now=now + timedelta(days=2)) == []
        woken = await actions.wake_snoozed(uow=UnitOfWork(session), now=now + timedelta(days=3, seconds=1))
    assert [a.id for a in woken] == [alert.id]
    [alert] = await rows(database, Alert)
    assert (alert.status, alert.snoozed_until) == ("open", None)
    assert (await outbox(database))[-1]["type"] == "alert.updated"


async def test_churn_closes_open_alerts_as_churned_cancels_their_tasks_and_starts_win_back(database: Database):
    await apply(database, created(), complaint(), score(churn_risk=0.9))
    await apply(database, status_changed(status="churned", days=1))
    alerts = await rows(database, Alert)
    assert {(a.status, a.outcome) for a in alerts} == {("resolved", "churned")}
    tasks = await rows(database, Task)
    assert {t.status for t in tasks if t.alert_id} == {"cancelled"}
    [win_back] = [t for t in tasks if t.alert_id is None]
    assert (win_back.action, win_back.owner, win_back.reason) == ("win_back_offer", "anna", "churned")
    resolved = [e for e in await outbox(database) if e["type"] == "alert.resolved"]
    assert {e["data"]["outcome"] for e in resolved} == {"churned"}
    assert len(resolved) == 2


async def test_a_churn_in_the_same_batch_cancels_the_tasks_the_batch_created(database: Database):
    # New tasks are written at commit; a read of tasks in the same transaction must still see them.
    await apply(database, created(), complaint(), status_changed(status="churned", days=1))
    tasks = await rows(database, Task)
    assert {t.status for t in tasks if t.alert_id} == {"cancelled"}
    assert [t.action for t in tasks if t.alert_id is None] == ["win_back_offer"]


async def test_an_owner_change_in_the_same_batch_hands_over_the_tasks_the_batch_created(database: Database):
    await apply(database, created(owner="anna"), complaint(), updated(owner="ben", version=2))
    tasks = await rows(database, Task)
    assert len(tasks) == 2
    assert {t.owner for t in tasks} == {"ben"}


async def test_a_late_older_churn_is_history_only(database: Database):
    await apply(database, created(), complaint())
    await apply(database, status_changed(status="won_back", days=5, previous="churned"))
    await apply(database, status_changed(status="churned", days=1))  # arrives late
    [alert] = await rows(database, Alert)
    assert alert.status == "open"


async def test_a_risk_alert_closes_as_saved_after_the_risk_stayed_low_long_enough(database: Database):
    await apply(database, score(churn_risk=0.9, days=0))
    await apply(database, score(churn_risk=0.4, days=1))
    [alert] = await rows(database, Alert)
    assert alert.risk_below_since == T0 + timedelta(days=1)
    async with database.transaction() as session:
        assert (
            await actions.auto_save(uow=UnitOfWork(session), after=timedelta(days=14), now=T0 + timedelta(days=10))
            == []
        )
        [saved] = await actions.auto_save(
            uow=UnitOfWork(session), after=timedelta(days=14), now=T0 + timedelta(days=16)
        )
    assert (saved.status, saved.outcome) == ("resolved", Outcome.saved)
    assert "60%" in saved.outcome_note


async def test_a_rising_risk_stops_the_auto_save_clock(database: Database):
    await apply(database, score(churn_risk=0.9, days=0), score(churn_risk=0.4, days=1), score(churn_risk=0.7, days=2))
    [alert] = [a for a in await rows(database, Alert) if a.reason == "high_churn_risk"]
    assert alert.risk_below_since is None


async def test_an_owner_change_hands_open_work_to_the_new_owner(database: Database):
    await apply(database, created(owner="anna"), complaint())
    await apply(database, updated(owner="ben", version=2))
    assert {t.owner for t in await rows(database, Task)} == {"ben"}
    [alert] = await rows(database, Alert)
    assert alert.owner == "ben"
    await apply(database, updated(owner="carl", version=2))  # a stale version changes nothing
    assert {t.owner for t in await rows(database, Task)} == {"ben"}


async def test_erasure_removes_notes_keeps_the_aggregates_and_confirms_once(database: Database):
    await apply(database, created(), complaint())
    [alert] = await rows(database, Alert)
    async with database.transaction() as session:
        task = (await session.execute(select(Task).limit(1))).scalar_one()
        await complete_task(uow=UnitOfWork(session), task_id=task.id, note="Spoke to Mrs Jones at home")
        await actions.resolve_alert(
            uow=UnitOfWork(session), alert_id=alert.id, outcome=Outcome.saved, note="Jones stays"
        )
    await apply(database, erased())
    await apply(database, erased())  # a second erasure event (new id)
    [alert] = await rows(database, Alert)
    assert (alert.outcome, alert.outcome_note) == ("saved", None)
    assert {t.note for t in await rows(database, Task)} == {None}
    confirmations = [e for e in await outbox(database) if e["type"] == "erasure.confirmed"]
    assert len(confirmations) == 1
    assert confirmations[0]["data"]["service"] == "retention"


async def test_webhook_deliveries_and_sse_changes_are_written_with_the_change(database: Database):
    async with database.transaction() as session:
        session.add(Webhook(url="http://127.0.0.1:9/hook", event_types=["alert.raised"], secret="x" * 16))
        session.add(Webhook(url="http://127.0.0.1:9/all", event_types=[], secret="y" * 16))
    await apply(database, complaint(minutes=0), complaint(minutes=1))
    deliveries = await rows(database, WebhookDelivery)
    by_hook = sorted(d.event_type for d in deliveries)
    assert by_hook.count("alert.raised") == 2  # both hooks
    assert by_hook.count("alert.updated") == 1  # only the catch-all hook
    assert by_hook.count("task.created") == 2
    outbox_ids = {e["id"] for e in await outbox(database)}
    assert {d.event_id for d in deliveries} <= outbox_ids  # the same CloudEvent ids as on Kafka
    changes = await rows(database, AlertChange)
    assert [c.event_type for c in sorted(changes, key=lambda c: c.seq)] == ["alert.raised", "alert.updated"]


async def test_a_rolled_back_change_queues_no_delivery(database: Database):
    async with database.transaction() as session:
        session.add(Webhook(url="http://127.0.0.1:9/hook", event_types=[], secret="x" * 16))
    try:
        async with database.transaction() as session:
            await HANDLERS["complaint.opened"](UnitOfWork(session), complaint())
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    assert await rows(database, WebhookDelivery) == []
    assert await rows(database, Alert) == []


async def test_preview_over_stored_history_writes_nothing(database: Database):
    await apply(database, score("a", 0.3, days=0), score("b", 0.3, days=0))
    await apply(database, score("a", 0.7, days=2), score("b", 0.4, days=2))
    before = (len(await outbox(database)), len(await rows(database, Alert)), len(await rows(database, Signal)))
    rule = Rule(RuleKind.risk_jump, "medium", params=RuleParams(delta=0.3, within_days=7))
    async with database.transaction() as session:
        result = await preview_rule(session=session, rule=rule, start=T0, end=T0 + timedelta(days=7))
    assert [(h.customer_id, h.first_triggered_at) for h in result.customers] == [("a", T0 + timedelta(days=2))]
    after = (len(await outbox(database)), len(await rows(database, Alert)), len(await rows(database, Signal)))
    assert after == before


async def test_the_same_event_twice_is_recorded_once(database: Database):
    event = complaint()
    await apply(database, event)
    await apply(database, event)
    async with database.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Signal))).scalar_one() == 1
    [alert] = await rows(database, Alert)
    assert alert.trigger_count == 1


async def test_erasure_removes_factor_labels_and_webhook_payloads_that_could_quote_personal_data(database: Database):
    async with database.transaction() as session:
        session.add(Webhook(url="http://127.0.0.1:9/all", event_types=[], secret="y" * 16))
    scored = score(churn_risk=0.9)
    scored.data.factors = [Factor(code="attr.nickname", label="nickname: Snorkelfrost", contribution=0.8)]
    await apply(database, created(), scored, complaint())
    assert "Snorkelfrost" in str([a.factors for a in await rows(database, Alert)])  # the rules copied the label
    other = score("c-2", churn_risk=0.9)
    await apply(database, other)

    await apply(database, erased())

    def about(customer_id: str, payload: str) -> bool:
        # A value equal to the id, not a substring: "c-1" also occurs inside random UUIDs ("...c-1f...").
        def values(node: object) -> list[object]:
            if isinstance(node, dict):
                return [v for item in node.values() for v in values(item)]
            if isinstance(node, list):
                return [v for item in node for v in values(item)]
            return [node]

        return customer_id in values(orjson.loads(payload))

    alerts = [a for a in await rows(database, Alert) if a.customer_id == "c-1"]
    factors = [f for a in alerts for f in a.factors]
    assert {"code": "attr.nickname", "label": "attr.nickname", "contribution": 0.8} in factors
    assert all(f["label"] == f["code"] for f in factors)
    signals = [s for s in await rows(database, Signal) if s.customer_id == "c-1"]
    assert signals and "Snorkelfrost" not in str([s.data for s in signals])
    changes = [c for c in await rows(database, AlertChange) if c.alert_id in {a.id for a in alerts}]
    assert changes and "Snorkelfrost" not in str([c.data for c in changes])
    deliveries = await rows(database, WebhookDelivery)
    mine = [d for d in deliveries if d.payload == "{}"]
    assert mine and all(d.status == "failed" for d in mine)  # pending ones are not sent after the erasure
    assert not any("Snorkelfrost" in d.payload or about("c-1", d.payload) for d in deliveries)
    assert any(about("c-2", d.payload) for d in deliveries)  # another customer's deliveries are untouched


async def test_finished_webhook_deliveries_are_pruned_after_their_retention(database: Database):
    async with database.transaction() as session:
        session.add(Webhook(url="http://127.0.0.1:9/all", event_types=[], secret="y" * 16))
    await apply(database, complaint())
    async with database.transaction() as session:
        [first, *others] = (await session.execute(select(WebhookDelivery))).scalars().all()
        first.status = "delivered"
        for pending in others:
            pending.created_at = T0 - timedelta(days=30)  # old but still pending: kept
    async with database.transaction() as session:
        await prune(
            session=session,
            signals_for=timedelta(days=400),
            changes_for=timedelta(hours=72),
            deliveries_for=timedelta(days=14),
            now=first.created_at + timedelta(days=15),
        )
    left = await rows(database, WebhookDelivery)
    assert first.id not in {d.id for d in left} and len(left) == len(others)
