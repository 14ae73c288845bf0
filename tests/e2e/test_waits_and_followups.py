"""Waits that end early and follow-ups, end to end on real Kafka and PostgreSQL through the gateway
(docs/sequences.md).

- A churned platinum customer enters the win-back playbook's platinum sequence, which waits three days for
  an order, a complaint or a survey answer. Each of three customers sends one of those through the
  platform (an ERP order on erp.orders.v1, a complaint and a survey through the API); each wait ends at
  once and the enrolment's trail records which event ended it.
- Scheduled follow-ups per tier fire from the persisted timers: a return visit for platinum customers
  (a task for the account manager, again at the next interval), a survey link for gold customers, and a
  gold customer who opted out of e-mail gets a blocked touch with its reason instead.

The platform runs the follow-up loop every second (tests/platform.py); the schedules use a very short
interval so the second visit falls due within the test. Every bound below is a liveness bound. The
win-back playbook and the schedules are shared by the whole platform, so both are restored at the end.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts.erp import ErpOrderPlaced
from contracts.topics import ERP_ORDERS
from servicekit.events.envelope import CloudEvent
from tests.e2e.helpers import (
    OPT_OUT_OF_EMAIL,
    create_customer,
    eventually,
    post_complaint,
    produce,
    put_consent,
)

pytestmark = pytest.mark.e2e

WAITING = {
    "steps": [
        {
            "id": "wait_reply",
            "kind": "wait",
            "hours": 72,
            "until": ["purchased", "complaint_opened", "survey_answered"],
        },
        {"id": "bought", "kind": "branch", "when": {"purchased": True}, "then": "thanks"},
        {"id": "call", "kind": "task", "action": "call_owner", "due_in_hours": 24},
        {"id": "thanks", "kind": "task", "action": "follow_up_visit", "due_in_hours": 48},
    ],
    # a purchase must not stop the sequence before the wait records what ended it
    "stop_when": {"purchased": False},
}


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _churned_playbook(gateway: httpx.AsyncClient) -> dict[str, Any]:
    playbooks = (await _ok(await gateway.get("/api/v1/playbooks", params={"limit": 100})))["items"]
    [playbook] = [p for p in playbooks if p["reason"] == "churned"]
    return playbook


async def _enrolment(gateway: httpx.AsyncClient, customer_id: str) -> dict[str, Any] | None:
    items = (await _ok(await gateway.get(f"/api/v1/customers/{customer_id}/enrolments")))["items"]
    return items[0] if items else None


async def _churn(gateway: httpx.AsyncClient, customer_id: str) -> None:
    await _ok(
        await gateway.post(
            f"/api/v1/customers/{customer_id}/status",
            json={"status": "churned", "reason": "competitor", "churned_at": str(datetime.now(UTC).date())},
        )
    )


async def test_a_wait_ends_early_when_an_order_a_complaint_or_a_survey_answer_arrives(gateway: httpx.AsyncClient):
    playbook = await _churned_playbook(gateway)
    before = playbook["sequences"]
    await _ok(
        await gateway.patch(f"/api/v1/playbooks/{playbook['id']}", json={"sequences": {**before, "platinum": WAITING}})
    )
    try:
        tag = f"e2e-wait-{uuid.uuid4().hex[:8]}"
        customers = {}
        for what in ("order", "complaint", "survey"):
            customers[what] = await create_customer(
                gateway, external_ref=f"{tag}-{what}", owner="agent-wait", attributes={"tier": "platinum"}
            )
            customers[what]["ref"] = f"{tag}-{what}"
            await _churn(gateway, customers[what]["id"])

        async def all_parked() -> bool:
            for customer in customers.values():
                enrolment = await _enrolment(gateway, customer["id"])
                if enrolment is None or enrolment["status"] != "active" or enrolment["due_at"] is None:
                    return False
                # the first round ran: the timer is the wait's end, days away (before it, the step is due now)
                if datetime.fromisoformat(enrolment["due_at"]) < datetime.now(UTC) + timedelta(days=1):
                    return False
            return True

        await eventually(all_parked, timeout_s=90, what="each churned customer parked at the three-day wait")
        for customer in customers.values():
            enrolment = await _enrolment(gateway, customer["id"])
            assert enrolment is not None and enrolment["cursor"] == 0 and enrolment["reason"] == "churned"

        # an order through the ERP topic, a complaint and a survey answer through the API
        buyer = customers["order"]
        order = ErpOrderPlaced(
            order_id=f"{tag}-O1",
            customer_ref=buyer["ref"],
            amount="80.00",
            currency="EUR",
            quantity=1,
            placed_at=datetime.now(UTC),
        )
        ref = buyer["ref"].encode()
        await produce(ERP_ORDERS, [(ref, CloudEvent.wrap(order, source="/erp/e2e").to_json())])
        await post_complaint(gateway, customers["complaint"]["id"], severity="low")
        await _ok(
            await gateway.post(
                "/api/v1/interactions",
                json={
                    "customer_id": customers["survey"]["id"],
                    "type": "survey",
                    "channel": "email",
                    "initiated_by": "customer",
                    "survey": "nps",
                    "score": 9,
                    "external_id": f"{tag}-survey",
                },
            ),
            201,
        )

        async def ended(customer_id: str) -> dict[str, Any] | None:
            enrolment = await _enrolment(gateway, customer_id)
            return enrolment if enrolment is not None and enrolment["status"] != "active" else None

        for what, event, next_steps in (
            ("order", "purchased", ["bought", "thanks"]),
            ("complaint", "complaint_opened", ["bought", "call", "thanks"]),
            ("survey", "survey_answered", ["bought", "call", "thanks"]),
        ):
            enrolment = await eventually(
                lambda c=customers[what]["id"]: ended(c), timeout_s=120, what=f"the {what} to end the wait"
            )
            assert enrolment["status"] == "completed", enrolment
            trail = enrolment["trail"]
            [wait] = [step for step in trail if step["step"] == "wait_reply"]
            assert wait["result"] == f"ended_by:{event}", trail
            passed = [step["step"] for step in trail]
            assert passed[passed.index("wait_reply") + 1 :][: len(next_steps)] == next_steps, trail
    finally:
        await _ok(await gateway.patch(f"/api/v1/playbooks/{playbook['id']}", json={"sequences": before}))


async def _tasks(gateway: httpx.AsyncClient, customer_id: str, reason: str) -> list[dict[str, Any]]:
    items = (await _ok(await gateway.get("/api/v1/tasks", params={"customer_id": customer_id, "limit": 100})))["items"]
    return [t for t in items if t["reason"] == reason]


async def _touches(gateway: httpx.AsyncClient, customer_id: str, reason: str) -> list[dict[str, Any]]:
    items = (await _ok(await gateway.get(f"/api/v1/customers/{customer_id}/touches", params={"limit": 100})))["items"]
    return [t for t in items if t["reason"] == reason]


async def test_scheduled_follow_ups_fire_per_tier(gateway: httpx.AsyncClient):
    tag = f"e2e-fu-{uuid.uuid4().hex[:8]}"
    key = await create_customer(gateway, external_ref=f"{tag}-p", owner="agent-fu", attributes={"tier": "platinum"})
    surveyed = await create_customer(gateway, external_ref=f"{tag}-g", owner="agent-fu", attributes={"tier": "gold"})
    opted_out = await create_customer(gateway, external_ref=f"{tag}-o", owner="agent-fu", attributes={"tier": "gold"})
    await put_consent(gateway, opted_out["id"], OPT_OUT_OF_EMAIL)
    every_days = 10 / 86400  # ten seconds: the next visit falls due within the test
    try:
        await _ok(
            await gateway.put(
                "/api/v1/followup-schedules/platinum",
                json={"every_days": every_days, "action": "follow_up_visit", "due_in_hours": 24},
            )
        )
        await _ok(
            await gateway.put(
                "/api/v1/followup-schedules/gold", json={"every_days": 30, "action": "satisfaction_survey"}
            )
        )

        async def two_visits() -> list[dict[str, Any]] | None:
            tasks = await _tasks(gateway, key["id"], "scheduled_followup")
            return tasks if len(tasks) >= 2 else None

        visits = await eventually(two_visits, timeout_s=120, what="two scheduled return visits")
        assert {(t["action"], t["owner"], t["status"]) for t in visits} == {("follow_up_visit", "agent-fu", "open")}
        assert len({t["id"] for t in visits}) == len(visits)

        async def survey_sent() -> list[dict[str, Any]] | None:
            return await _touches(gateway, surveyed["id"], "scheduled_followup") or None

        [sent] = await eventually(survey_sent, timeout_s=120, what="the gold customer's survey follow-up")
        assert (sent["action"], sent["channel"], sent["allowed"]) == ("satisfaction_survey", "email", True)

        async def survey_blocked() -> list[dict[str, Any]] | None:
            touches = await _touches(gateway, opted_out["id"], "scheduled_followup")
            return touches if any(not t["allowed"] for t in touches) else None

        blocked = await eventually(survey_blocked, timeout_s=120, what="the opted-out customer's blocked survey")
        assert [(t["allowed"], t["verdict"]) for t in blocked] == [(False, "opted_out")]
        assert await _tasks(gateway, surveyed["id"], "scheduled_followup") == []  # a survey is a touch, not a task
    finally:
        for tier in ("platinum", "gold"):
            response = await gateway.delete(f"/api/v1/followup-schedules/{tier}")
            assert response.status_code in (204, 404), response.text


async def test_follow_ups_after_a_resolved_complaint_and_after_a_win_back(gateway: httpx.AsyncClient):
    tag = f"e2e-fx-{uuid.uuid4().hex[:8]}"
    complained = await create_customer(gateway, external_ref=f"{tag}-c", owner="agent-fx", attributes={"tier": "iron"})
    returning = await create_customer(gateway, external_ref=f"{tag}-w", owner="agent-fx", attributes={"tier": "iron"})
    try:
        await _ok(
            await gateway.put(
                "/api/v1/followup-triggers/iron/complaint_resolved",
                json={"action": "call_owner", "delay_hours": 0, "due_in_hours": 24},
            )
        )
        await _ok(
            await gateway.put(
                "/api/v1/followup-triggers/iron/won_back", json={"action": "follow_up_visit", "delay_hours": 0}
            )
        )
        complaint = await post_complaint(gateway, complained["id"], severity="low")
        for step in ({"to": "acknowledged"}, {"to": "valid"}, {"to": "resolved", "resolution": "Re-shipped"}):
            await _ok(await gateway.post(f"/api/v1/complaints/{complaint['id']}/transitions", json=step))
        await _churn(gateway, returning["id"])
        await _ok(await gateway.post(f"/api/v1/customers/{returning['id']}/status", json={"status": "won_back"}))

        async def called() -> list[dict[str, Any]] | None:
            return await _tasks(gateway, complained["id"], "after_complaint_resolved") or None

        [call] = await eventually(called, timeout_s=120, what="the call after the resolved complaint")
        assert (call["action"], call["owner"], call["status"]) == ("call_owner", "agent-fx", "open")

        async def visited() -> list[dict[str, Any]] | None:
            return await _tasks(gateway, returning["id"], "after_won_back") or None

        [visit] = await eventually(visited, timeout_s=120, what="the visit after the win-back")
        assert (visit["action"], visit["owner"]) == ("follow_up_visit", "agent-fx")
        # one follow-up per event
        listed = (await _ok(await gateway.get("/api/v1/followup-triggers")))["items"]
        assert {(t["tier"], t["trigger"]) for t in listed} >= {("iron", "complaint_resolved"), ("iron", "won_back")}
        assert len(await _tasks(gateway, complained["id"], "after_complaint_resolved")) == 1
    finally:
        for trigger in ("complaint_resolved", "won_back"):
            response = await gateway.delete(f"/api/v1/followup-triggers/iron/{trigger}")
            assert response.status_code in (204, 404), response.text
