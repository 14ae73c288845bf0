"""The platform's core promise, end to end on real Kafka and PostgreSQL: a complaint becomes one alert."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from runner.launcher import Platform, ProcessSpec
from tests.e2e.conftest import service_url
from tests.e2e.helpers import alerts_for, create_customer, eventually, metric, post_complaint, produce, read_topic

pytestmark = pytest.mark.e2e


async def _score_exists(gateway: httpx.AsyncClient, customer_id: str) -> dict | None:
    response = await gateway.get(f"/api/v1/customers/{customer_id}/scores")
    return response.json() if response.status_code == 200 else None


async def test_a_severe_complaint_through_the_gateway_becomes_exactly_one_alert(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    # Posted at once: the interaction service must not answer a false 404 while its replica catches up.
    await post_complaint(gateway, customer["id"], severity="high")

    alerts = await eventually(lambda: alerts_for(gateway, customer["id"]), what="the churn alert")
    await eventually(lambda: _score_exists(gateway, customer["id"]), what="the rescoring")
    await asyncio.sleep(1.0)  # give any second, wrongful alert the time to show up
    alerts = await alerts_for(gateway, customer["id"])
    assert len(alerts) == 1
    [alert] = alerts
    assert alert["reason"] == "severe_complaint"
    assert alert["severity"] == "high"
    assert alert["status"] == "open"
    assert alert["trigger_count"] == 1


async def test_redelivered_events_leave_exactly_one_alert(gateway: httpx.AsyncClient):
    customer = await create_customer(gateway)
    await post_complaint(gateway, customer["id"], severity="critical")
    [alert] = await eventually(lambda: alerts_for(gateway, customer["id"]), what="the churn alert")

    records = await eventually(
        lambda: read_topic("crm.interaction.v1", match=lambda r: r.key == customer["id"].encode()),
        what="the customer's interaction events",
    )
    handled_by_retention = [r for r in records if orjson.loads(r.value)["type"] == "complaint.opened"]
    assert len(handled_by_retention) == 1
    async with httpx.AsyncClient(timeout=5) as client:
        before = await metric(client, service_url("retention"), "crm_events_duplicate_total")
        await produce("crm.interaction.v1", [(r.key, r.value) for r in records])  # the same events again
        await eventually(
            lambda: _grew(client, service_url("retention"), "crm_events_duplicate_total", before, 1),
            what="the retention consumer to see the duplicates",
        )
    alerts = await alerts_for(gateway, customer["id"])
    assert len(alerts) == 1
    assert alerts[0]["id"] == alert["id"]
    assert alerts[0]["trigger_count"] == 1


async def _grew(client: httpx.AsyncClient, base: str, name: str, before: float, by: int) -> bool:
    return await metric(client, base, name) >= before + by


async def test_a_poison_message_is_dead_lettered_and_later_messages_are_still_handled(gateway: httpx.AsyncClient):
    poison = f"poison-{uuid.uuid4()}".encode()
    await produce("crm.interaction.v1", [(b"no-such-customer", poison)])
    customer = await create_customer(gateway)
    await post_complaint(gateway, customer["id"], severity="high")
    await eventually(lambda: alerts_for(gateway, customer["id"]), what="an alert after the poison message")

    dead = await eventually(
        lambda: _dead_letters_of(poison, expected=2), what="the poison message in crm.interaction.v1.dlq"
    )
    consumers = sorted(dict(dead_record.headers)["dlq.consumer"].decode() for dead_record in dead)
    assert consumers == ["retention", "scoring"]  # each consuming group dead-letters its copy once
    for record in dead:
        headers = dict(record.headers)
        assert record.value == poison
        assert b"not a CloudEvents JSON envelope" in headers["dlq.reason"]
        assert headers["dlq.origin"].startswith(b"crm.interaction.v1/")


async def _dead_letters_of(payload: bytes, expected: int) -> list | None:
    found = await read_topic("crm.interaction.v1.dlq", match=lambda r: r.value == payload)
    return found if len(found) >= expected else None


async def test_a_relay_killed_between_commit_and_publish_loses_nothing(platform: Platform, gateway: httpx.AsyncClient):
    """The interaction service's API commits; its relay dies before publishing; a restarted relay publishes."""
    interaction = platform.specs["interaction"]
    relay_port = interaction.port + 100
    platform.specs["interaction-relay"] = ProcessSpec(
        "interaction-relay",
        [*interaction.argv[:-1], "relay", "--port", str(relay_port)],
        relay_port,
        dict(interaction.env),
    )
    customer = await create_customer(gateway)
    platform.stop("interaction")
    platform.start("interaction", argv=[*interaction.argv[:-1], "api,consume"])
    platform.start("interaction-relay", env={"CRM_FAULT": "exit_before_publish"})
    try:
        platform.wait_ready(["interaction"])
        await post_complaint(gateway, customer["id"], severity="high")
        relay = platform.running["interaction-relay"].popen
        await eventually(lambda: asyncio.sleep(0, relay.poll() is not None), what="the faulty relay to exit")
        assert relay.returncode == 70
        assert await alerts_for(gateway, customer["id"]) == []  # nothing was published

        platform.start("interaction-relay")  # no fault this time
        [alert] = await eventually(lambda: alerts_for(gateway, customer["id"]), what="the alert after the restart")
        assert alert["trigger_count"] == 1
        envelopes = [
            orjson.loads(r.value)
            for r in await read_topic("crm.interaction.v1", match=lambda r: r.key == customer["id"].encode())
        ]
        opened = [e for e in envelopes if e["type"] == "complaint.opened"]
        assert len(opened) == 1
    finally:
        platform.stop("interaction-relay")
        platform.stop("interaction")
        platform.start("interaction")
        platform.wait_ready(["interaction"])
