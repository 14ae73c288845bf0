"""Webhook sending: signed requests, retries with backoff, giving up after the maximum attempts."""

import time

import httpx
from sqlalchemy import select

from servicekit.db import Database
from services.retention.delivery import deliver_due
from services.retention.handlers import HANDLERS
from services.retention.models import Webhook, WebhookDelivery
from services.retention.settings import RetentionSettings
from services.retention.signing import verify
from tests.unit.retention.events import complaint

SECRET = "whsec-0123456789abcdef"


async def _subscribe_and_raise(database: Database) -> None:
    async with database.transaction() as session:
        session.add(Webhook(url="http://receiver.test/hook", event_types=["alert.raised"], secret=SECRET))
    async with database.transaction() as session:
        event = complaint()
        await HANDLERS[event.envelope.type](session, event)


async def _deliveries(database: Database) -> list[WebhookDelivery]:
    async with database.sessions() as session:
        return list((await session.execute(select(WebhookDelivery))).scalars())


async def test_a_delivery_is_signed_and_marked_delivered(database: Database):
    await _subscribe_and_raise(database)
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as client:
        assert await deliver_due(database, client, settings) == 1
        assert await deliver_due(database, client, settings) == 0  # nothing left
    [request] = seen
    [delivery] = await _deliveries(database)
    assert verify(SECRET, request.headers["X-CRM-Signature"], request.content, now=int(time.time()))
    assert request.headers["X-CRM-Event-Id"] == delivery.event_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)


async def test_a_failing_receiver_is_retried_with_backoff_then_given_up(database: Database):
    await _subscribe_and_raise(database)
    calls = 0

    def failing(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    settings = RetentionSettings(database_url=database.url, webhook_max_attempts=3, webhook_backoff_base_s=60)
    async with httpx.AsyncClient(transport=httpx.MockTransport(failing)) as client:
        await deliver_due(database, client, settings)
        [delivery] = await _deliveries(database)
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 503")
        assert await deliver_due(database, client, settings) == 0  # not due before its backoff

        for _ in range(2):  # time passes: make it due again
            async with database.transaction() as session:
                stored = await session.get(WebhookDelivery, delivery.id)
                stored.next_attempt_at = stored.created_at
            await deliver_due(database, client, settings)
    [delivery] = await _deliveries(database)
    assert (delivery.status, delivery.attempts, calls) == ("failed", 3, 3)


async def test_an_unreachable_receiver_is_recorded_as_an_error(database: Database):
    await _subscribe_and_raise(database)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        await deliver_due(database, client, settings)
    [delivery] = await _deliveries(database)
    assert delivery.status == "pending"
    assert delivery.last_status_code is None
    assert "ConnectError" in delivery.last_error
