"""Small helpers for end-to-end tests: waiting for asynchronous effects, reading and writing Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer

from servicekit.kafka import make_producer, topic_partitions
from servicekit.settings import KafkaSettings
from tests.e2e.conftest import KAFKA, service_url

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30, what: str = "") -> T:
    """Poll probe until it returns something truthy; fail with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or probe}; last value {last!r}")


async def create_customer(gateway: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Test Customer", "kind": "company", "segment": "smb", "owner": "agent-1", **fields}
    response = await gateway.post("/api/v1/customers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def post_complaint(gateway: httpx.AsyncClient, customer_id: str, severity: str = "high") -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "type": "complaint",
        "channel": "phone",
        "initiated_by": "customer",
        "severity": severity,
        "category": "delivery",
        "text": "The order arrived two weeks late.",
        "external_id": f"ticket-{uuid.uuid4()}",
    }
    response = await gateway.post("/api/v1/interactions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def alerts_for(gateway: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    response = await gateway.get("/api/v1/alerts", params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def read_topic(topic: str, *, match: Callable[[Any], bool] = lambda _: True, timeout_s: float = 5) -> list[Any]:
    """Every record of topic from the beginning (all partitions) that satisfies match."""
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await topic_partitions(KAFKA, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(m for m in messages if match(m))
        return records
    finally:
        await consumer.stop()


async def produce(topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = make_producer(KafkaSettings(bootstrap_servers=KAFKA), client_id="e2e-tests")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def metric(client: httpx.AsyncClient, base_url: str, name: str) -> float:
    """Sum of every series of a Prometheus counter or gauge on a service's /metrics."""
    text = (await client.get(f"{base_url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


CONSENT_HANDLED = 'crm_events_handled_total{event_type="consent.changed",service="retention"}'
OPT_OUT_OF_EMAIL = {"channels": {"email": {"status": "opt_out", "legal_basis": "consent", "source": "web_form"}}}


async def put_consent(gateway: httpx.AsyncClient, customer_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """PUT a customer's consent and wait until retention has applied it (its consent.changed handled)."""
    async with httpx.AsyncClient(timeout=5) as client:
        before = await metric(client, service_url("retention"), CONSENT_HANDLED)
    response = await gateway.put(f"/api/v1/customers/{customer_id}/consent", json=body)
    assert response.status_code == 200, response.text

    async def applied() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            return await metric(client, service_url("retention"), CONSENT_HANDLED) >= before + 1

    await eventually(applied, what="retention to apply consent.changed")
    return response.json()
