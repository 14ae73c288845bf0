"""Webhooks: subscriptions to retention events; deliveries are queued by publishing.py, sent by delivery.py."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from contracts.registry import REGISTRY
from servicekit.problems import Problem, field_error, not_found
from servicekit.unit_of_work import UnitOfWork
from services.retention.catalog.service import changed as catalog_changed
from services.retention.db import page
from services.retention.webhooks import targets
from services.retention.webhooks.models import DeliveryStatus, Webhook, WebhookCreate, WebhookDelivery

ERASED_PAYLOAD = "{}"


async def create_webhook(
    *,
    uow: UnitOfWork,
    data: WebhookCreate,
    allow: Sequence[targets.IPNetwork] = (),
    resolve: targets.Resolver = targets.system_resolver,
) -> Webhook:
    try:
        # Checked again at every delivery (DNS can change); this catches the obvious case early.
        await targets.pin(str(data.url), allow, resolve)
    except targets.TargetRefused as exc:
        raise Problem(
            422,
            "Invalid webhook",
            f"Webhook target refused: {exc}.",
            code="validation",
            errors=[field_error("url", f"{exc}: webhooks go to public addresses only")],
        ) from None
    known = {m.event_type for m in REGISTRY if m.topic == "crm.retention.v1"}
    unknown = sorted(set(data.event_types) - known)
    if unknown:
        raise Problem(
            422,
            "Invalid webhook",
            f"Unknown event types {unknown}",
            code="validation",
            errors=[field_error("event_types", f"choose from {sorted(known)}")],
        )
    hook = Webhook(url=str(data.url), event_types=sorted(set(data.event_types)), secret=data.secret)
    uow.session.add(hook)
    await uow.session.flush()
    catalog_changed(uow)
    return hook


async def get_webhook(*, session: AsyncSession, webhook_id: str, active_only: bool = True) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None or (active_only and not hook.active):
        raise not_found("Webhook", webhook_id)
    return hook


async def list_webhooks(*, session: AsyncSession, limit: int, offset: int) -> tuple[Sequence[Webhook], int]:
    conditions = [Webhook.active.is_(True)]
    query = select(Webhook).where(*conditions).order_by(Webhook.created_at, Webhook.id)
    return await page(session, query, conditions, Webhook, limit, offset)


async def delete_webhook(*, uow: UnitOfWork, webhook_id: str) -> None:
    """Unsubscribe: nothing more is queued or sent; its delivery log stays readable."""
    session = uow.session
    hook = await get_webhook(session=session, webhook_id=webhook_id)
    hook.active = False
    await session.execute(
        WebhookDelivery.__table__.update()
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="webhook deleted")
    )
    await session.flush()
    catalog_changed(uow)


async def list_deliveries(
    *, session: AsyncSession, webhook_id: str, limit: int, offset: int
) -> tuple[Sequence[WebhookDelivery], int]:
    await get_webhook(session=session, webhook_id=webhook_id, active_only=False)
    conditions = [WebhookDelivery.webhook_id == webhook_id]
    query = select(WebhookDelivery).where(*conditions).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    return await page(session, query, conditions, WebhookDelivery, limit, offset)


async def erase_deliveries(session: AsyncSession, customer_id: str) -> int:
    """Blank the payload of every webhook delivery about the customer; returns how many.

    Deliveries have no customer column: the payload (a CloudEvent) names the customer in data.customer_id.
    The LIKE narrows the rows; the parsed id decides. A pending delivery is dropped (failed, payload
    gone) rather than sent with data of an erased customer.
    """
    rows = (
        (await session.execute(select(WebhookDelivery).where(col(WebhookDelivery.payload).contains(customer_id))))
        .scalars()
        .all()
    )
    erased = 0
    for delivery in rows:
        try:
            about = orjson.loads(delivery.payload).get("data", {}).get("customer_id")
        except (orjson.JSONDecodeError, AttributeError):
            about = None
        if about != customer_id:
            continue
        delivery.payload = ERASED_PAYLOAD
        if delivery.status == DeliveryStatus.pending:
            delivery.status = DeliveryStatus.failed
            delivery.last_error = "customer erased"
        erased += 1
    return erased
