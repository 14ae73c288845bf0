"""Operations against the real platform: the dashboards' and rules' metrics exist on the live /metrics,
the gateway's readiness shows every service, `make status` reads it all, and a dead letter replays."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import insert, select

from contracts.customer import CustomerCreated
from contracts.topics import CUSTOMER, dead_letter
from runner import dlq
from runner.launcher import SERVICES, Platform
from runner.status import collect
from servicekit.db import Database
from servicekit.events.envelope import CloudEvent
from servicekit.settings import KafkaSettings
from servicekit.tables import INBOX
from tests.e2e.conftest import GATEWAY, KAFKA, database_url, service_url
from tests.e2e.helpers import eventually
from tests.platform import PORT_OFFSET
from tests.unit.ops.observability import exported_sample_names, referenced_metrics


def _metrics_headers() -> dict[str, str]:
    # When the platform requires a metrics token, the scrape sends it as Prometheus does.
    token = os.environ.get("CRM_METRICS_TOKEN")
    return {"authorization": f"Bearer {token}"} if token else {}


async def test_every_metric_a_dashboard_or_alert_rule_uses_is_on_the_platforms_metrics_endpoints(
    platform: Platform,
) -> None:
    exported: set[str] = set()
    async with httpx.AsyncClient(timeout=10, headers=_metrics_headers()) as client:
        for base in [GATEWAY, *(service_url(name) for name in SERVICES)]:
            response = await client.get(f"{base}/metrics")
            assert response.status_code == 200, base
            exported |= exported_sample_names(response.text)

    for source, names in referenced_metrics().items():
        assert names <= exported, (
            f"{source} uses metrics the running platform does not export: {sorted(names - exported)}"
        )


async def test_gateway_readiness_shows_every_service_with_its_own_dependency_checks(platform: Platform) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{GATEWAY}/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["service"] == "gateway"
    assert set(body["checks"]) == set(SERVICES)
    for name, check in body["checks"].items():
        assert check["ok"] is True, name
        # Each service's own checks, nested: an operator sees why a service is not ready from one call.
        assert {"database", "migrations", "kafka_producer"} <= set(check["checks"]), name
        assert all(c["ok"] for c in check["checks"].values()), name


async def test_status_reports_every_process_ready_with_its_outbox_figures(platform: Platform) -> None:
    statuses = {s.name: s for s in collect(port_offset=PORT_OFFSET)}

    assert set(statuses) == {*SERVICES, "gateway"}
    assert all(s.live and s.ready and not s.failing for s in statuses.values()), statuses
    for name in SERVICES:  # every service runs a relay, whose housekeeping sets these at start
        assert statuses[name].backlog is not None and statuses[name].oldest_age_s is not None, name


async def test_a_replayed_dead_letter_is_applied_by_the_consumer_that_dead_lettered_it(platform: Platform) -> None:
    """A customer.created that retention once dead-lettered: its .dlq record (as the consumer writes it) and its
    `dead_lettered` inbox row. The replay goes through crm.customer.v1 and retention applies it this time."""
    customer_id = f"dlq-{uuid.uuid4().hex[:12]}"
    data = CustomerCreated(customer_id=customer_id, kind="person", status="active", created_at=datetime.now(UTC))
    envelope = CloudEvent.wrap(data, source="/crm/customer")
    headers = [("content-type", b"application/cloudevents+json"), ("ce_type", data.event_type.encode())]
    headers += [("ce_id", envelope.id.encode()), ("dlq.reason", b"handler failed after 5 attempt(s): e2e")]
    headers += [("dlq.consumer", b"retention"), ("dlq.origin", f"{CUSTOMER}/0/424242".encode())]
    retention = Database(database_url("retention"))
    try:
        async with retention.transaction() as session:
            await session.execute(
                insert(INBOX).values(
                    consumer="retention",
                    event_id=envelope.id,
                    event_type=data.event_type,
                    outcome="dead_lettered",
                    handled_at=datetime.now(UTC),
                )
            )
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        try:
            await producer.send_and_wait(
                dead_letter(CUSTOMER), value=envelope.to_json(), key=customer_id.encode(), headers=headers
            )
        finally:
            await producer.stop()

        kafka = KafkaSettings(bootstrap_servers=KAFKA)
        letters = [letter for letter in await dlq.read_all(kafka, CUSTOMER) if letter.event_id == envelope.id]
        assert len(letters) == 1 and letters[0].consumer == "retention" and letters[0].origin_topic == CUSTOMER
        assert all(not k.startswith("dlq.") for k, _ in letters[0].headers)

        await dlq.replay(kafka, letters, database_urls={"retention": database_url("retention")})

        async def outcome() -> Any:
            async with retention.sessions() as session:
                row = (
                    await session.execute(
                        select(INBOX.c.outcome).where(INBOX.c.consumer == "retention", INBOX.c.event_id == envelope.id)
                    )
                ).scalar_one_or_none()
            return row if row == "handled" else None

        assert await eventually(outcome, timeout_s=30, what="retention to apply the replayed event") == "handled"
        # Replaying again is a duplicate: the handled row stays, nothing is dead-lettered anew.
        await dlq.replay(kafka, letters, database_urls={"retention": database_url("retention")})
        assert await outcome() == "handled"
    finally:
        await retention.dispose()
