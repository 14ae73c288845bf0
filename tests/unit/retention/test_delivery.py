"""Webhook sending: signed requests, retries with backoff, giving up after the maximum attempts."""

import time

import httpx
from sqlalchemy import select

from servicekit.db import Database
from servicekit.unit_of_work import UnitOfWork
from services.retention.handlers import HANDLERS
from services.retention.settings import RetentionSettings
from services.retention.webhooks.delivery import deliver_due
from services.retention.webhooks.models import Webhook, WebhookDelivery
from services.retention.webhooks.signing import verify
from tests.unit.retention.events import complaint

SECRET = "whsec-0123456789abcdef"


async def public_dns(host: str, port: int) -> list[str]:
    """A resolver answering every name with one public address (no DNS in unit tests)."""
    return ["93.184.216.34"]


def dns(*answer: str):
    async def resolve(host: str, port: int) -> list[str]:
        return list(answer)

    return resolve


async def _subscribe_and_raise(database: Database, url: str = "http://receiver.test/hook") -> None:
    async with database.transaction() as session:
        session.add(Webhook(url=url, event_types=["alert.raised"], secret=SECRET))
    async with database.transaction() as session:
        event = complaint()
        await HANDLERS[event.envelope.type](UnitOfWork(session), event)


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
        assert await deliver_due(database, client, settings, public_dns) == 1
        assert await deliver_due(database, client, settings, public_dns) == 0  # nothing left
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
        await deliver_due(database, client, settings, public_dns)
        [delivery] = await _deliveries(database)
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 503")
        assert await deliver_due(database, client, settings, public_dns) == 0  # not due before its backoff

        for _ in range(2):  # time passes: make it due again
            async with database.transaction() as session:
                stored = await session.get(WebhookDelivery, delivery.id)
                stored.next_attempt_at = stored.created_at
            await deliver_due(database, client, settings, public_dns)
    [delivery] = await _deliveries(database)
    assert (delivery.status, delivery.attempts, calls) == ("failed", 3, 3)


async def test_an_unreachable_receiver_is_recorded_as_an_error(database: Database):
    await _subscribe_and_raise(database)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as client:
        await deliver_due(database, client, settings, public_dns)
    [delivery] = await _deliveries(database)
    assert delivery.status == "pending"
    assert delivery.last_status_code is None
    # Coarse on purpose: "refused" vs "timed out" would tell a caller which ports are open.
    assert delivery.last_error == "delivery failed"


async def test_the_error_recorded_never_echoes_the_targets_body_or_the_connect_error(database: Database):
    await _subscribe_and_raise(database)

    def chatty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="redis_version:7.2 internal banner")

    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(chatty)) as client:
        await deliver_due(database, client, settings, public_dns)
    [delivery] = await _deliveries(database)
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")


async def test_a_host_resolving_to_a_private_or_metadata_address_is_never_contacted(database: Database):
    await _subscribe_and_raise(database, "http://rebinding.example/hook")
    seen: list[httpx.Request] = []
    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as c:
        for answer in (["169.254.169.254"], ["127.0.0.1"], ["10.1.2.3"], ["93.184.216.34", "192.168.0.1"], ["::1"]):
            async with database.transaction() as session:
                [stored] = (await session.execute(select(WebhookDelivery))).scalars()
                stored.next_attempt_at = stored.created_at
            await deliver_due(database, c, settings, dns(*answer))
    [delivery] = await _deliveries(database)
    assert seen == []
    assert (delivery.status, delivery.last_error, delivery.attempts) == ("pending", "target address not allowed", 5)


async def test_the_request_goes_to_the_checked_address_with_the_original_host_header(database: Database):
    await _subscribe_and_raise(database, "https://hooks.example:8443/hook")
    seen: list[httpx.Request] = []
    settings = RetentionSettings(database_url=database.url)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as c:
        await deliver_due(database, c, settings, public_dns)
    [request] = seen
    assert (str(request.url), request.headers["host"]) == ("https://93.184.216.34:8443/hook", "hooks.example:8443")
    assert request.extensions["sni_hostname"] == "hooks.example"


async def test_an_allow_listed_network_may_receive_deliveries_for_local_development(database: Database):
    await _subscribe_and_raise(database, "http://127.0.0.1:9/hook")
    seen: list[httpx.Request] = []
    settings = RetentionSettings(database_url=database.url, webhook_allowed_networks=["127.0.0.0/8"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(204))) as c:
        assert await deliver_due(database, c, settings) == 1
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:9/hook"]
