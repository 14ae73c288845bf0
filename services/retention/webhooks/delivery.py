"""Sends queued webhook deliveries: signed, retried with exponential backoff, logged per attempt.

Deliveries are claimed with a short lease (next_attempt_at pushed ahead) in one transaction and sent
outside it, so no database transaction is held open across HTTP calls and two senders never send the
same delivery at once. A crash mid-send only means the lease expires and the delivery is sent again:
receivers de-duplicate by X-CRM-Event-Id (at-least-once, like Kafka).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from servicekit import tracing
from servicekit.clock import utc_now
from servicekit.db import Database
from services.retention.settings import RetentionSettings
from services.retention.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from services.retention.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    backoff,
    sign,
)
from services.retention.webhooks.targets import (
    IPNetwork,
    Resolver,
    TargetRefused,
    networks,
    pin,
    system_resolver,
)

log = logging.getLogger("retention.webhooks")
LEASE = timedelta(seconds=60)
REFUSED = "target address not allowed"  # the host is, or resolves to, a non-public address not allow-listed
FAILED = "delivery failed"  # no HTTP response: connection, TLS or timeout, deliberately not told apart


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: str
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def claim(database: Database, *, batch: int, now: datetime) -> list[Claimed]:
    async with database.transaction() as session:
        rows = (
            await session.execute(
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(batch)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
        ).all()
        for delivery, _ in rows:
            delivery.next_attempt_at = now + LEASE
        return [Claimed(d.id, h.url, h.secret, d.event_id, d.event_type, d.payload.encode()) for d, h in rows]


async def send(
    client: httpx.AsyncClient,
    item: Claimed,
    allow: Iterable[IPNetwork] = (),
    resolve: Resolver = system_resolver,
) -> Attempt:
    """One attempt. The recorded error is coarse on purpose: the target's body or the connect error's
    detail ("refused" vs "timed out") would turn last_error into a port scanner of the network."""
    try:
        target = await pin(item.url, allow, resolve)
    except TargetRefused:
        return Attempt(item.delivery_id, None, REFUSED)
    timestamp = int(time.time())
    headers = {
        "host": target.host_header,
        "content-type": "application/cloudevents+json",
        SIGNATURE_HEADER: sign(item.secret, timestamp, item.payload),
        EVENT_ID_HEADER: item.event_id,
        EVENT_TYPE_HEADER: item.event_type,
    }
    # Sent to the checked address; TLS still verifies the certificate of the URL's host name.
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    # While tracing is on, the delivery is a span of the trace that raised the event (its envelope says which).
    attributes = {"crm.event.type": item.event_type, "crm.event.id": item.event_id}
    try:
        with tracing.envelope_span("webhook deliver", item.payload, attributes=attributes):
            response = await client.post(target.url, content=item.payload, headers=headers, extensions=extensions)
    except httpx.HTTPError:
        return Attempt(item.delivery_id, None, FAILED)
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Attempt(item.delivery_id, response.status_code, error)


async def record(database: Database, attempts: list[Attempt], settings: RetentionSettings, *, now: datetime) -> None:
    async with database.transaction() as session:
        for attempt in attempts:
            delivery = await session.get(WebhookDelivery, attempt.delivery_id)
            if delivery is None or delivery.status != DeliveryStatus.pending:
                continue  # deleted webhook meanwhile
            delivery.attempts += 1
            delivery.last_status_code = attempt.status_code
            delivery.last_error = attempt.error
            if attempt.ok:
                delivery.status = DeliveryStatus.delivered
                delivery.delivered_at = now
            elif delivery.attempts >= settings.webhook_max_attempts:
                delivery.status = DeliveryStatus.failed
            else:
                delivery.next_attempt_at = now + backoff(
                    delivery.attempts, base_s=settings.webhook_backoff_base_s, cap_s=settings.webhook_backoff_cap_s
                )


async def deliver_due(
    database: Database, client: httpx.AsyncClient, settings: RetentionSettings, resolve: Resolver = system_resolver
) -> int:
    """One round: claim what is due, send it concurrently, record the results. Returns how many were sent."""
    claimed = await claim(database, batch=settings.webhook_batch_size, now=utc_now())
    if not claimed:
        return 0
    allow = networks(settings.webhook_allowed_networks)
    attempts = await asyncio.gather(*(send(client, item, allow, resolve) for item in claimed))
    await record(database, list(attempts), settings, now=utc_now())
    return len(claimed)


async def run_webhook_sender(app: FastAPI) -> None:
    database: Database = app.state.database
    settings: RetentionSettings = app.state.settings
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
        while True:
            try:
                if await deliver_due(database, client, settings):
                    continue  # more may be due: no pause while there is a backlog
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook round failed")
            await asyncio.sleep(settings.webhook_poll_interval_s)
