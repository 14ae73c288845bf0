"""The retention loop end to end through the gateway, on real Kafka and PostgreSQL.

A severe complaint from a platinum customer becomes a high-severity alert with service-recovery work
for the customer's own account manager; more complaints update that alert; a snooze keeps it quiet
until its date; the churn closes it as churned and shows in the metrics; webhooks get signed
deliveries, and a failing receiver is retried.

The platinum tier comes from the customer's account-managed attribute (attributes.tier), which the
retention replica honours over the computed value tier, so the test does not depend on how scoring
ranks a brand-new customer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from services.retention.webhooks.signing import verify
from tests.e2e.helpers import alerts_for, create_customer, eventually, post_complaint

pytestmark = pytest.mark.e2e
SECRET = "e2e-webhook-secret-0123456789"


@dataclass
class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records webhook deliveries; it can fail the first calls of each
    event (per event, not overall: an alert another test raised after the subscription must not take the
    failures this test waits to see retried)."""

    fail_first: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    calls: int = 0
    calls_per_event: dict[str, int] = field(default_factory=dict)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.calls += 1
        event_id = headers.get("x-crm-event-id", "")
        self.calls_per_event[event_id] = self.calls_per_event.get(event_id, 0) + 1
        failing = self.calls_per_event[event_id] <= self.fail_first
        if not failing:
            self.requests.append((headers, body))
        status = b"500 Internal Server Error" if failing else b"204 No Content"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def for_alert(self, alert_id: str, event_type: str) -> list[tuple[dict[str, str], bytes]]:
        return [
            (h, b)
            for h, b in self.requests
            if orjson.loads(b)["data"].get("alert_id") == alert_id and orjson.loads(b)["type"] == event_type
        ]


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    good, flaky = Receiver(), Receiver(fail_first=2)
    servers = []
    for receiver in (good, flaky):
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        receiver.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    yield good, flaky
    for server in servers:
        server.close()


async def _subscribe(gateway: httpx.AsyncClient, receiver: Receiver, types: list[str]) -> dict[str, Any]:
    body = {"url": f"http://127.0.0.1:{receiver.port}/hook", "event_types": types, "secret": SECRET}
    response = await gateway.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _known_to_retention(gateway: httpx.AsyncClient, segment: str) -> bool:
    """The retention service's customer replica has the customer (its segment shows in the metrics)."""
    response = await gateway.get("/api/v1/retention/metrics", params={"group_by": "segment"})
    assert response.status_code == 200, response.text
    return any(g["key"] == segment for g in response.json()["groups"])


async def _tasks(gateway: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await gateway.get("/api/v1/tasks", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _alert(gateway: httpx.AsyncClient, alert_id: str) -> dict[str, Any]:
    response = await gateway.get(f"/api/v1/alerts/{alert_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_retention_loop_from_complaint_to_churn(gateway: httpx.AsyncClient, receivers):
    good, flaky = receivers
    hook = await _subscribe(gateway, good, ["alert.raised", "alert.resolved", "task.created"])
    flaky_hook = await _subscribe(gateway, flaky, ["alert.raised"])

    segment = f"e2e-{uuid.uuid4().hex[:8]}"
    owner = f"agent-{uuid.uuid4().hex[:6]}"
    customer = await create_customer(gateway, owner=owner, segment=segment, attributes={"tier": "platinum"})
    customer_id = customer["id"]
    await eventually(lambda: _known_to_retention(gateway, segment), what="the retention replica of the customer")

    # 1. A severe complaint from a platinum customer: one high alert, service recovery for the owner.
    await post_complaint(gateway, customer_id, severity="high")
    alerts = await eventually(
        lambda: _alerts_with_reason(gateway, customer_id, "severe_complaint"), what="the severe_complaint alert"
    )
    [alert] = alerts
    assert (alert["severity"], alert["status"], alert["owner"], alert["tier"]) == ("high", "open", owner, "platinum")
    assert alert["event_ids"]
    tasks = await eventually(lambda: _tasks(gateway, customer_id=customer_id), what="the playbook's tasks")
    actions = {t["action"]: t for t in tasks if t["alert_id"] == alert["id"]}
    assert {"service_recovery", "call_owner", "executive_outreach"} <= set(actions)
    assert actions["service_recovery"]["owner"] == owner
    assert [t["id"] for t in await _tasks(gateway, owner=owner, status="open")]  # in the owner's queue

    # 2. Three more complaints update the same alert.
    for _ in range(3):
        await post_complaint(gateway, customer_id, severity="critical")
    updated = await eventually(
        lambda: _count_reached(gateway, alert["id"], 4), what="the alert to count four complaints"
    )
    assert (updated["id"], updated["severity"]) == (alert["id"], "critical")
    assert len(await _alerts_with_reason(gateway, customer_id, "severe_complaint")) == 1

    # 3. Snoozed: quiet until its date (new evidence counted silently), then open again.
    until = datetime.now(UTC) + timedelta(seconds=8)
    snoozed = await gateway.post(
        f"/api/v1/alerts/{alert['id']}/snooze", json={"until": until.isoformat(), "reason": "customer on holiday"}
    )
    assert snoozed.status_code == 200, snoozed.text
    await post_complaint(gateway, customer_id, severity="high")
    quiet = await eventually(lambda: _count_reached(gateway, alert["id"], 5), what="the silent fifth trigger")
    assert quiet["status"] == "snoozed"
    assert datetime.now(UTC) < until, "the test ran too slowly to observe the snooze"
    woken = await eventually(
        lambda: _status_is(gateway, alert["id"], "open"), timeout_s=30, what="the alert to reopen after its snooze"
    )
    assert woken["snoozed_until"] is None

    # 4. Webhooks: a correctly signed delivery; the failing receiver is retried until it accepts.
    [(headers, body)] = await eventually(
        lambda: _async(good.for_alert(alert["id"], "alert.raised")), what="the alert.raised webhook"
    )
    assert verify(SECRET, headers["x-crm-signature"], body, now=int(time.time()))
    assert headers["x-crm-event-id"] == orjson.loads(body)["id"]
    await eventually(
        lambda: _async(flaky.for_alert(alert["id"], "alert.raised")), timeout_s=60, what="the retried delivery"
    )
    log = (await gateway.get(f"/api/v1/webhooks/{flaky_hook['id']}/deliveries", params={"limit": 200})).json()
    retried = [d for d in log["items"] if d["event_id"] == orjson.loads(body)["id"]]
    assert retried and retried[0]["status"] == "delivered" and retried[0]["attempts"] >= 2

    # 5. The customer churns: the open alerts close as churned, and the churn shows in the metrics.
    churned = await gateway.post(
        f"/api/v1/customers/{customer_id}/status",
        json={"status": "churned", "reason": "price", "churned_at": datetime.now(UTC).date().isoformat()},
    )
    assert churned.status_code == 200, churned.text
    closed = await eventually(lambda: _status_is(gateway, alert["id"], "resolved"), what="the churned outcome")
    assert closed["outcome"] == "churned"
    assert all(a["status"] == "resolved" for a in await alerts_for(gateway, customer_id))
    await eventually(lambda: _async(good.for_alert(alert["id"], "alert.resolved")), what="the alert.resolved webhook")
    metrics = await eventually(lambda: _segment_metrics(gateway, segment), what="the churn in the metrics")
    assert (metrics["customers"], metrics["churned"], metrics["churn_rate"]) == (1, 1, 1.0)
    assert (metrics["alerted_customers"], metrics["precision"], metrics["recall"]) == (1, 1.0, 1.0)
    assert metrics["median_warning_days"] is not None and metrics["median_warning_days"] >= 0
    win_back = await eventually(lambda: _with_action(gateway, customer_id, "win_back_offer"), what="the win-back task")
    assert win_back["owner"] == owner
    assert (await gateway.delete(f"/api/v1/webhooks/{hook['id']}")).status_code == 204
    assert (await gateway.delete(f"/api/v1/webhooks/{flaky_hook['id']}")).status_code == 204


async def _async(value: Any) -> Any:
    return value


async def _alerts_with_reason(gateway: httpx.AsyncClient, customer_id: str, reason: str) -> list[dict[str, Any]]:
    return [a for a in await alerts_for(gateway, customer_id) if a["reason"] == reason]


async def _count_reached(gateway: httpx.AsyncClient, alert_id: str, count: int) -> dict[str, Any] | None:
    alert = await _alert(gateway, alert_id)
    return alert if alert["trigger_count"] >= count else None


async def _status_is(gateway: httpx.AsyncClient, alert_id: str, status: str) -> dict[str, Any] | None:
    alert = await _alert(gateway, alert_id)
    return alert if alert["status"] == status else None


async def _with_action(gateway: httpx.AsyncClient, customer_id: str, action: str) -> dict[str, Any] | None:
    return next((t for t in await _tasks(gateway, customer_id=customer_id) if t["action"] == action), None)


async def _segment_metrics(gateway: httpx.AsyncClient, segment: str) -> dict[str, Any] | None:
    now = datetime.now(UTC)
    params = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
        "group_by": "segment",
    }
    response = await gateway.get("/api/v1/retention/metrics", params=params)
    assert response.status_code == 200, response.text
    group = next((g for g in response.json()["groups"] if g["key"] == segment), None)
    return group if group and group["churned"] else None


async def test_the_alert_stream_replays_changes_after_the_last_event_id(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    await post_complaint(gateway, customer["id"], severity="high")
    await eventually(lambda: alerts_for(gateway, customer["id"]), what="an alert to stream")

    async def first_events(headers: dict[str, str], count: int) -> list[dict[str, str]]:
        events: list[dict[str, str]] = []
        current: dict[str, str] = {}
        async with gateway.stream(
            "GET", "/api/v1/alerts/stream", headers={"accept": "text/event-stream", **headers}, timeout=15
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if not line:
                    if "id" in current:
                        events.append(current)
                        if len(events) >= count:
                            break
                    current = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    current[name] = value
        return events

    replayed = await asyncio.wait_for(first_events({"Last-Event-ID": "0"}, 2), 20)
    ids = [int(e["id"]) for e in replayed]
    assert ids == sorted(ids) and len(set(ids)) == 2
    assert replayed[0]["event"].startswith("alert.")
    resumed = await asyncio.wait_for(first_events({"Last-Event-ID": str(ids[0])}, 1), 20)
    assert int(resumed[0]["id"]) == ids[1]  # nothing missed, nothing repeated
